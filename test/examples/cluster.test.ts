import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { freePort } from '../cluster/helpers.ts';

const script = new URL('../../examples/cluster/supervise.ts', import.meta.url).pathname;

describe('examples/cluster', () => {
  it('supervises two workers, asks each for its count over IPC, reloads and stops cleanly', async () => {
    const port = await freePort();
    const { stdout, code } = await new Promise<{ stdout: string; code: number }>((resolve) => {
      execFile(
        process.execPath,
        [...process.execArgv.filter((a) => a.startsWith('--conditions')), script],
        { env: { ...process.env, PORT: String(port) }, timeout: 60_000 },
        (err, out) => resolve({ stdout: out, code: err ? ((err as { code?: number }).code ?? 1) : 0 }),
      );
    });
    assert.equal(code, 0, stdout);
    const lines = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const served = lines.find((l) => 'served' in l) as { served: number[]; total: number };
    assert.equal(served.total, 10, 'every request was served by one of the two workers');
    assert.equal(served.served.length, 2);
    assert.deepEqual(lines.find((l) => 'reload' in l)?.reload, { ok: true, replaced: 2 });
    assert.equal(lines.find((l) => 'stopped' in l)?.stopped, 0);
    assert.match(
      stdout,
      /^\[server:0\] slot 0 listening on \d+$/m,
      'worker output is prefixed with its slot',
    );
  });
});
