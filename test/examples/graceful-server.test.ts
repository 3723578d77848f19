import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { after, describe, it } from 'node:test';
import { within } from '../helpers.ts';

const main = new URL('../../examples/graceful-server/main.ts', import.meta.url).pathname;
let child: ChildProcess | undefined;
after(() => {
  if (child?.exitCode === null) child.kill('SIGKILL');
});

describe('examples/graceful-server', () => {
  it('SIGTERM under keep-alive load: every accepted request completes, no connection is reset, exit 0', async (t) => {
    child = spawn(process.execPath, [...process.execArgv.filter((a) => a.startsWith('--conditions')), main], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: Record<string, unknown>[] = [];
    let buffered = '';
    const exit = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));
    const port = await within(
      new Promise<number>((resolve) => {
        child!.stdout!.on('data', (d: Buffer) => {
          buffered += d;
          for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
            const l = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
            buffered = buffered.slice(nl + 1);
            lines.push(l);
            if (typeof l.listening === 'number') resolve(l.listening);
          }
        });
      }),
      20_000,
      'the example to listen',
    );

    // 20 keep-alive clients, each sending requests of 100 ms back to back until the server stops accepting.
    const agent = new Agent({ keepAlive: true, maxSockets: 20 });
    const outcomes = { ok: 0, refused: 0, errors: [] as string[] };
    const one = (path: string) =>
      new Promise<'ok' | 'refused' | string>((resolve) => {
        const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
          let body = '';
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () =>
            resolve(res.statusCode === 200 && body.length > 0 ? 'ok' : `status ${res.statusCode}`),
          );
          res.on('error', (err) => resolve(`response ${err.message}`));
        });
        req.on('error', (err: NodeJS.ErrnoException) =>
          resolve(err.code === 'ECONNREFUSED' ? 'refused' : (err.code ?? err.message)),
        );
        req.end();
      });
    let inflight = 0;
    const loop = async (i: number) => {
      for (;;) {
        inflight++;
        const r = await one(i % 5 === 0 ? '/hash?text=weft' : '/?ms=100');
        inflight--;
        if (r === 'ok') outcomes.ok++;
        else if (r === 'refused') {
          outcomes.refused++;
          return; // the listener is closed: a refused new connection is expected, stop this client
        } else outcomes.errors.push(r);
        if (outcomes.errors.length > 0) return;
      }
    };
    const loops = Array.from({ length: 20 }, (_, i) => loop(i));
    await within(
      new Promise<void>((resolve) => {
        const poll = () => (outcomes.ok >= 60 && inflight >= 10 ? resolve() : setTimeout(poll, 5));
        poll();
      }),
      20_000,
      'load to build up',
    );
    const t0 = performance.now();
    child.kill('SIGTERM');
    const code = await within(exit, 15_000, 'the example to exit by itself');
    const took = performance.now() - t0;
    await within(Promise.all(loops), 10_000, 'the clients to finish');
    agent.destroy();

    assert.equal(
      code,
      0,
      JSON.stringify(lines.filter((l) => l.level !== 'info' || /shutdown/.test(String(l.msg)))),
    );
    assert.deepEqual(outcomes.errors, [], 'no reset, no hang-up, no non-200');
    const counts = lines.find((l) => 'counts' in l)?.counts as { started: number; finished: number };
    assert.ok(counts, 'the flush hook reported its counts');
    assert.equal(
      counts.finished,
      counts.started,
      'every request the server accepted was answered with a 200',
    );
    assert.equal(outcomes.ok, counts.finished, 'and every one of them reached its client');
    assert.ok(took < 2_000, `exited ${Math.round(took)} ms after SIGTERM`);
    t.diagnostic(
      `accepted ${counts.started}, answered ${counts.finished}, refused after close ${outcomes.refused}, ` +
        `exit ${Math.round(took)} ms after SIGTERM`,
    );
  });
});
