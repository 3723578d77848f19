// `weft-files upload`: folders, progress on stderr, outcomes with --wait, exit codes, clear errors.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { faultProxy } from './fault-proxy.ts';
import { makeImage, type Running, startService, until } from './helpers.ts';

const cli = new URL('../src/cli/weft-files.ts', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'files-client-'));

function run(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=weft-source', cli, ...args],
      // The resume state goes under the test's folder, not the user's ~/.cache.
      { env: { ...process.env, XDG_CACHE_HOME: join(dir, 'cache'), ...env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('weft-files upload', () => {
  let s: Running;
  before(async () => {
    s = await startService({ token: 'tok' });
    mkdirSync(join(dir, 'photos', 'nested'), { recursive: true });
    writeFileSync(join(dir, 'photos', 'a.jpg'), await makeImage('jpeg', 320, 240));
    writeFileSync(join(dir, 'photos', 'nested', 'b.png'), await makeImage('png', 64, 64));
    writeFileSync(join(dir, 'people.csv'), 'name,age\nann,31\nbob,27\n');
    writeFileSync(join(dir, 'broken.jpg'), (await makeImage('jpeg', 320, 240)).subarray(0, 300));
  });
  after(async () => {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('uploads files and folders, waits for their jobs and prints each outcome', async () => {
    const r = await run(['upload', join(dir, 'photos'), join(dir, 'people.csv'), '--url', s.url, '--wait'], {
      FILES_TOKEN: 'tok',
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /^✔ .*photos\/a\.jpg → [0-9a-f-]{36} image\/jpeg, \d+ bytes; image completed$/m);
    assert.match(r.stdout, /^✔ .*nested\/b\.png → .* image\/png, .*; image completed$/m);
    assert.match(r.stdout, /^✔ .*people\.csv → .* text\/csv, .*; csv completed$/m);
    assert.match(r.stdout, /^3 of 3 files ok$/m);
    assert.match(r.stderr, /upload 3 files .*100\.0%/, 'progress on stderr, a log line when not a terminal');
  });

  it('exits 1 and says why when a job fails or a write is refused', async () => {
    const failed = await run(['upload', join(dir, 'broken.jpg'), '--url', s.url, '--wait', '--token', 'tok']);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /^✖ .*broken\.jpg → .*image dead \(ERR_WEFT_FILES_BAD_IMAGE: .+\)$/m);
    const refused = await run(['upload', join(dir, 'people.csv'), '--url', s.url, '--token', 'wrong']);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stdout,
      /^✖ .*people\.csv: 401 ERR_WEFT_FILES_UNAUTHORIZED: The bearer token is not valid$/m,
    );
  });

  it('resolves relative paths from where npm was run (INIT_CWD), not from the package folder', async () => {
    const r = await run(['upload', 'people.csv', '--url', s.url, '--token', 'tok'], { INIT_CWD: dir });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, new RegExp(`^✔ ${dir}/people\\.csv → `, 'm'));
  });

  it('resumes a file where the server has it when run again after being killed mid-upload', async () => {
    const big = randomBytes(24 * 1024 * 1024);
    const path = join(dir, 'big.bin');
    writeFileSync(path, big);
    const state = join(dir, 'resume-state.json');
    const proxy = await faultProxy({ target: { host: '127.0.0.1', port: Number(new URL(s.url).port) } });
    try {
      // Slowed, so the kill lands in the middle of the body.
      proxy.set('slow', { delayMs: 5 });
      const url = `http://127.0.0.1:${proxy.port}`;
      const child = spawn(
        process.execPath,
        ['--conditions=weft-source', cli, 'upload', path, '--url', url, '--token', 'tok', '--state', state],
        { stdio: 'ignore' },
      );
      const exited = once(child, 'exit');
      let partial = '';
      await until(
        () => {
          const m = existsSync(state) ? /\/uploads\/([0-9a-f-]{36})/.exec(readFileSync(state, 'utf8')) : null;
          partial = m ? join(s.dataDir, 'uploads', m[1]!) : '';
          return partial !== '' && existsSync(partial) && statSync(partial).size >= big.length / 4;
        },
        30_000,
        'a quarter of the file to reach the server',
      );
      child.kill('SIGKILL');
      await exited;
      proxy.set('pass');

      const again = await run(['upload', path, '--url', url, '--token', 'tok', '--state', state]);
      assert.equal(again.code, 0, again.stderr + again.stdout);
      const m = /resuming .*big\.bin at (\d+) of (\d+) bytes/.exec(again.stderr);
      assert.ok(m, `says it resumes: ${again.stderr}`);
      assert.ok(
        Number(m[1]) >= big.length / 4 && Number(m[2]) === big.length,
        'from where the server had it',
      );
      const id = /→ ([0-9a-f-]{36}) /.exec(again.stdout)?.[1];
      const file = (await (await fetch(`${s.url}/files/${id}`)).json()) as { sha256: string; size: number };
      assert.equal(file.size, big.length);
      assert.equal(file.sha256, createHash('sha256').update(big).digest('hex'), 'whole');
      assert.doesNotMatch(readFileSync(state, 'utf8'), /uploads\//, 'forgotten once finished');
    } finally {
      await proxy.close();
    }
  });

  it('reports an unreachable service, and bad usage with exit 2', async () => {
    const down = await run(['upload', join(dir, 'people.csv'), '--url', 'http://127.0.0.1:9']);
    assert.equal(down.code, 1);
    assert.match(down.stdout, /nothing listens on http:\/\/127\.0\.0\.1:9 \(is the service running\?\)/);
    const usage = await run(['upload']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /no file or folder to upload/);
    const missing = await run(['upload', join(dir, 'nope')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read .*nope: ENOENT/);
    assert.equal((await run(['frob'])).code, 2);
  });
});
