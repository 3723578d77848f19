// weft start --watch: a change to the application's source rolls the workers over to it; a change that does not
// start (a syntax error) leaves the previous workers serving, and the next good change is picked up; changes in
// ignored places (node_modules, *.log) do not reload.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort } from '../cluster/helpers.ts';
import { eventually } from '../helpers.ts';
import { killStarted, startWeft } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'weft-watch-'));
after(() => {
  killStarted();
  rmSync(dir, { recursive: true, force: true });
});

const app = (version: string) =>
  `import { createServer } from 'node:http';\n` +
  `createServer((q, r) => r.end('${version}')).listen(Number(process.env.PORT), '127.0.0.1');\n`;

async function answer(port: number): Promise<string> {
  try {
    return await (await fetch(`http://127.0.0.1:${port}/`)).text();
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
}

describe('weft start --watch', () => {
  it('reloads on a change, keeps the old workers through a broken one, and ignores node_modules and logs', async () => {
    const file = join(dir, 'app.mjs');
    writeFileSync(file, app('v1'));
    const port = await freePort();
    const env = { ...process.env, PORT: String(port), WEFT_RUNTIME_DIR: join(dir, 'run') };
    const w = await startWeft(
      [file, '--workers', '2', '--name', 'watched', '--watch', '--start-timeout', '5s'],
      {
        env,
        cwd: dir,
      },
    );
    try {
      await eventually('v1 served', async () => (await answer(port)) === 'v1', 10_000);
      const lines = () => w.output().split('\n').filter(Boolean);
      const reloads = () => lines().filter((l) => l.includes('changed: reloading')).length;

      writeFileSync(file, app('v2'));
      await eventually('v2 served after the change', async () => (await answer(port)) === 'v2', 20_000);
      await eventually(
        'reloaded',
        () => lines().some((l) => l.includes('reloaded: 2 workers on the new code')),
        10_000,
      );

      writeFileSync(file, `${app('v3')}this is not JavaScript(\n`);
      await eventually(
        'the broken change reported',
        () => lines().some((l) => l.includes('the new code did not start')),
        20_000,
      );
      assert.equal(await answer(port), 'v2', 'the previous workers keep serving');

      const before = reloads();
      mkdirSync(join(dir, 'node_modules', 'x'), { recursive: true });
      writeFileSync(join(dir, 'node_modules', 'x', 'index.js'), 'ignored');
      writeFileSync(join(dir, 'debug.log'), 'ignored');
      writeFileSync(file, app('v4')); // a real change, after the ignored ones: only it may reload
      await eventually('v4 served after the fix', async () => (await answer(port)) === 'v4', 20_000);
      assert.equal(reloads(), before + 1);
      const last = JSON.parse(
        lines()
          .filter((l) => l.includes('changed: reloading'))
          .at(-1)!,
      ) as { files: string[] };
      assert.deepEqual(
        last.files.map((f) => f.split('/').pop()),
        ['app.mjs'],
        'the node_modules and *.log changes were not counted',
      );
    } finally {
      w.child.kill('SIGTERM');
      assert.equal(await w.exit, 0);
    }
  });
});
