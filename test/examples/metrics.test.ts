import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('examples/metrics', () => {
  it('serves a pool, a lifecycle and a meter on /metrics and /metrics.json, then closes and exits by itself', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ['--conditions=weft-source', 'examples/metrics/main.ts'],
          { cwd: root, timeout: 60_000 },
          (err, out, errOut) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: out, stderr: errOut }),
        );
      },
    );
    assert.equal(code, 0, `stdout:\n${stdout}\nstderr:\n${stderr}`);
    const lines = stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^listening http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.ok(lines.includes('weft_pool_tasks_total{pool="fib",outcome="completed"} 20'), stdout);
    assert.ok(lines.includes('weft_lifecycle_state{lifecycle="default",state="ready"} 1'), stdout);
    assert.ok(lines.includes('weft_stream_items_total{meter="results"} 20'), stdout);
    assert.ok(
      lines.some((l) => /^weft_eventloop_utilization_ratio [\d.e-]+$/.test(l)),
      stdout,
    );
    const summary = JSON.parse(lines.find((l) => l.startsWith('{')) ?? '{}') as Record<string, unknown>;
    assert.deepEqual(
      { ...summary, rssMB: typeof summary.rssMB },
      {
        completed: 20,
        state: 'ready',
        items: 20,
        rssMB: 'number',
      },
    );
    assert.equal(lines.at(-1), 'closed');
  });
});
