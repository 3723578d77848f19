import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { scryptSync, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const children = new Set<ChildProcess>();
after(() => {
  for (const child of children)
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `examples/<name>/main.ts` as `npm start` does; fails, naming the example and its output, after `ms`. */
function runExample(name: string, ms = 60_000): Promise<Run> {
  const child = spawn(process.execPath, ['--conditions=weft-source', `examples/${name}/main.ts`], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`examples/${name} did not exit within ${ms} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`),
      );
    }, ms);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Asserts a clean exit and returns stdout's lines. */
function lines(run: Run, name: string): string[] {
  const output = `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
  assert.equal(run.signal, null, `examples/${name} was killed by ${run.signal}\n${output}`);
  assert.equal(run.code, 0, `examples/${name} exited with code ${run.code}\n${output}`);
  return run.stdout.trimEnd().split('\n');
}

/** The value after `key=` on a line, as a number. */
function field(line: string | undefined, key: string): number {
  const match = line?.match(new RegExp(`\\b${key}=(-?[\\d.]+)`));
  assert.ok(match, `no ${key}= in ${JSON.stringify(line)}`);
  return Number(match[1]);
}

describe('examples', () => {
  it('password-hasher hashes with scrypt in the pool, verifies, reports stats and exits by itself', async () => {
    const out = lines(await runExample('password-hasher'), 'password-hasher');
    const hashes = new Map<string, string>();
    for (const line of out) {
      const match = line.match(/^hash (".*") (scrypt\$[0-9a-f]{32}\$[0-9a-f]{128})$/);
      if (match) hashes.set(JSON.parse(match[1]!) as string, match[2]!);
    }
    assert.deepEqual([...hashes.keys()], ['correct horse battery staple', 'hunter2', 's3cret']);
    // Each hash is a real scrypt key of its password (recomputed here), and salts differ.
    for (const [password, hash] of hashes) {
      const [, salt, key] = hash.split('$');
      const expected = Buffer.from(key!, 'hex');
      assert.ok(timingSafeEqual(scryptSync(password, Buffer.from(salt!, 'hex'), expected.length), expected));
    }
    assert.equal(new Set([...hashes.values()].map((h) => h.split('$')[1])).size, 3);
    assert.ok(out.includes('verify "hunter2": true'), out.join('\n'));
    assert.ok(out.includes('verify "hunter3": false'), out.join('\n'));
    const stats = out.find((l) => l.startsWith('stats '));
    assert.equal(field(stats, 'completed'), 5);
    assert.equal(field(stats, 'failed'), 0);
    assert.ok(field(stats, 'threads') >= 1 && field(stats, 'threads') <= 2);
    assert.ok(field(stats, 'p50') > 0);
  });

  it('image-filter moves the pixels to the thread and back (detached both ways) and filters them', async () => {
    const out = lines(await runExample('image-filter'), 'image-filter');
    assert.ok(out.includes('image 1920x1080 RGBA, 8294400 bytes'), out.join('\n'));
    assert.ok(out.includes('thread byteLength before any result: -1'), out.join('\n'));
    assert.ok(out.includes('caller byteLength after sending: 0'), out.join('\n'));
    assert.ok(out.includes('thread byteLength after returning: 0'), out.join('\n'));
    assert.ok(out.includes('result byteLength: 8294400'), out.join('\n'));
    // Rec. 601 luma of the gradient's corners and centre, worked out by hand.
    for (const line of [
      'pixel (0,0) rgba(0,0,128,255) -> rgba(14,14,14,255) ok',
      'pixel (1919,0) rgba(255,0,128,255) -> rgba(91,91,91,255) ok',
      'pixel (0,1079) rgba(0,255,128,255) -> rgba(163,163,163,255) ok',
      'pixel (1919,1079) rgba(255,255,128,255) -> rgba(240,240,240,255) ok',
      'pixel (960,540) rgba(128,128,128,255) -> rgba(128,128,128,255) ok',
      'pixels checked: all ok',
    ]) {
      assert.ok(out.includes(line), `missing ${JSON.stringify(line)} in\n${out.join('\n')}`);
    }
  });

  it('pipeline streams chunks from one task to another through a MessageChannel and exits by itself', async () => {
    const out = lines(await runExample('pipeline'), 'pipeline');
    const sent = out.find((l) => l.startsWith('stage A sent '));
    const summary = out.find((l) => l.startsWith('stage B summary '));
    // 100 000 squares in chunks of 4 096: 25 chunks; the sum of k² for k = 1..100 000.
    assert.equal(field(sent, 'chunks'), 25);
    assert.equal(field(sent, 'items'), 100_000);
    assert.equal(field(summary, 'chunks'), 25);
    assert.equal(field(summary, 'items'), 100_000);
    assert.equal(field(summary, 'sum'), 333_338_333_350_000);
    assert.equal(field(summary, 'min'), 1);
    assert.equal(field(summary, 'max'), 10_000_000_000);
    assert.ok(out.includes('expected sum=333338333350000: ok'), out.join('\n'));
  });

  it("README's pool example is the password-hasher example, verbatim", async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    for (const file of ['examples/password-hasher/tasks.ts', 'examples/password-hasher/main.ts']) {
      const source = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8');
      const block = readme.match(new RegExp(`\`\`\`ts\\n// ${file}\\n([\\s\\S]*?)\`\`\``));
      assert.ok(block, `README.md has no \`\`\`ts block starting with "// ${file}"`);
      assert.equal(block[1], source, `README.md's copy of ${file} differs from the file`);
    }
  });
});
