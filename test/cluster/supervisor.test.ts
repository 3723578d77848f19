import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import { within } from '../helpers.ts';
import { get, killAll, startSupervisor } from './helpers.ts';

after(killAll);

const started = (l: Record<string, unknown>) => Array.isArray(l.started);
const msg = (text: string | RegExp) => (l: Record<string, unknown>) =>
  typeof l.msg === 'string' && (typeof text === 'string' ? l.msg === text : text.test(l.msg));

/** Stops process `pid` for `ms` (SIGSTOP, then SIGCONT even when the wait fails): a supervisor held back. */
async function holdBack(pid: number, ms: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  try {
    await new Promise((r) => setTimeout(r, ms));
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

describe('supervisor', () => {
  it('runs N workers on one port, each with a stable WEFT_WORKER_INDEX, and stops them gracefully', async () => {
    const s = await startSupervisor();
    assert.deepEqual((await s.line(started, 'start')).started, ['ready', 'ready']);
    const seen = new Map<string, number>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const r = await get(s.port, '/pid');
      assert.ok('status' in r, JSON.stringify(r));
      const { pid, index, threads, workers } = JSON.parse(r.body) as {
        pid: number;
        index: string;
        threads: string;
        workers: string;
      };
      seen.set(index, pid);
      assert.equal(workers, '2', 'WEFT_WORKERS: how many slots');
      assert.equal(
        Number(threads),
        Math.max(1, Math.floor(availableParallelism() / 2)),
        'CPU budget per worker',
      );
    }
    assert.deepEqual([...seen.keys()].sort(), ['0', '1']);
    const inflight = get(s.port, '/?ms=300');
    await s.line(msg(/^worker \d ready$/), 'ready lines');
    s.child.kill('SIGTERM');
    const r = await inflight;
    assert.ok('status' in r && r.status === 200, `the in-flight request completed: ${JSON.stringify(r)}`);
    assert.equal(await within(s.exit, 20_000, 'supervisor exit'), 0);
    assert.ok(s.lines.some(msg('stopped (every worker drained)')));
  });

  it('restarts a crashed worker with backoff; the slot serves again', async () => {
    const s = await startSupervisor();
    await s.line(started, 'start');
    await get(s.port, '/crash');
    const exited = await s.line(msg(/^worker \d exited \(exit code 1\)$/), 'the crash');
    const slot = exited.slot as number;
    await s.line(
      (l) => l.msg === `worker ${slot} ready` && s.lines.indexOf(l) > s.lines.indexOf(exited),
      'the restart',
    );
    const r = await get(s.port, '/pid');
    assert.ok('status' in r && r.status === 200);
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'exit'), 0);
  });

  it('a crash loop in every slot makes the supervisor exit 1 with each slot’s last exit reason', async () => {
    const s = await startSupervisor(
      { crashLoop: { max: 2, windowMs: 60_000 }, backoff: { min: 10, max: 50 } },
      { CRASH_AT_START: '1' },
    );
    assert.equal(await within(s.exit, 30_000, 'supervisor exit'), 1);
    const line = s.lines.find(msg(/^every worker is crash-looping/));
    assert.ok(line, 'the give-up line');
    assert.deepEqual(line.reasons, ['slot 0: exit code 3', 'slot 1: exit code 3']);
  });

  it('with crashLoop.retryAfter a crash loop is retried, not given up: the slots serve again once the cause is gone', async () => {
    // The app throws at start while the marker exists: a dependency the supervisor cannot fix (a locked database).
    const marker = join(tmpdir(), `weft-broken-${process.pid}-${Date.now()}`);
    writeFileSync(marker, '');
    try {
      const s = await startSupervisor(
        { crashLoop: { max: 1, windowMs: 60_000, retryAfter: 200 }, backoff: { min: 10, max: 50 } },
        { BROKEN_MARKER: marker },
      );
      const looping = await s.line(
        msg(/^every worker is crash-looping: retrying every 200 ms/),
        'the retry line',
      );
      assert.equal((looping.reasons as string[]).length, 2);
      await s.line(msg(/^slot \d: starting it again in 200 ms$/), 'a retry scheduled');
      assert.equal(s.child.exitCode, null, 'the supervisor keeps running');
      rmSync(marker); // the cause is gone
      await s.line(msg('worker 0 ready'), 'slot 0 back');
      await s.line(msg('worker 1 ready'), 'slot 1 back');
      const r = await get(s.port, '/pid');
      assert.ok('status' in r && r.status === 200, JSON.stringify(r));
      s.child.kill('SIGTERM');
      assert.equal(await within(s.exit, 20_000, 'exit'), 0);
    } finally {
      rmSync(marker, { force: true });
    }
  });

  it('without retryAfter the give-up line says how to keep retrying', async () => {
    const s = await startSupervisor(
      { crashLoop: { max: 1, windowMs: 60_000 }, backoff: { min: 10, max: 50 } },
      { CRASH_AT_START: '1' },
    );
    assert.equal(await within(s.exit, 30_000, 'supervisor exit'), 1);
    assert.ok(s.lines.some(msg(/giving up .*--crash-loop-retry 30s \(crashLoop\.retryAfter\)$/)));
  });

  it('kills a worker whose event loop is stuck and replaces it, logging how long it was stuck', async () => {
    const s = await startSupervisor({ livenessTimeout: 600, hungKillGrace: 300 });
    await s.line(started, 'start');
    await get(s.port, '/hang');
    const hung = await s.line(msg(/has not answered for \d+ ms: killing it$/), 'the hung-worker line');
    assert.ok((hung.stuckMs as number) >= 600);
    const exit = await s.line(msg(/^worker \d exited \(hung \d+ ms\)$/), 'the kill');
    await s.line(
      (l) => l.msg === `worker ${exit.slot} ready` && s.lines.indexOf(l) > s.lines.indexOf(exit),
      'restart',
    );
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'exit'), 0);
  });

  it('replaces a worker over maxMemory: new one ready first, then the old one drained', async () => {
    const s = await startSupervisor({ maxMemory: 400 * 1024 * 1024 });
    await s.line(started, 'start');
    const r = await get(s.port, '/grow?mb=512');
    assert.ok('status' in r && r.status === 200);
    const over = await s.line(msg(/is over maxMemory: replacing it$/), 'the memory line');
    await s.line(msg(new RegExp(`^worker ${over.slot} replaced \\(memory\\)`)), 'the replacement');
    s.child.kill('SIGTERM');
    assert.equal(
      await within(s.exit, 20_000, 'exit'),
      0,
      JSON.stringify(s.lines.filter((l) => l.level !== 'info')),
    );
    const replacements = s.lines.filter(msg(/replaced \(memory\)/));
    assert.equal(replacements.length, 1, 'one replacement, not one per stats report');
  });

  it('two rolling reloads under keep-alive load fail no request and reset no connection', async () => {
    const s = await startSupervisor();
    await s.line(started, 'start');
    const agent = new Agent({ keepAlive: true, maxSockets: 20 });
    const results = { ok: 0, failed: [] as string[] };
    let stop = false;
    const loop = async () => {
      while (!stop) {
        const r = await new Promise<string>((resolve) => {
          const req = request({ host: '127.0.0.1', port: s.port, path: '/?ms=5', agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`));
          });
          req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
          req.end();
        });
        if (r === 'ok') results.ok++;
        else results.failed.push(r);
      }
    };
    const loops = Array.from({ length: 20 }, loop);
    for (const n of [1, 2]) {
      const before = s.lines.length;
      s.child.kill('SIGHUP');
      const done = await s.line(
        (l) =>
          s.lines.indexOf(l) >= before &&
          typeof l.msg === 'string' &&
          /^rolling reload (finished|failed)/.test(l.msg),
        `reload ${n}`,
        30_000,
      );
      assert.match(String(done.msg), /finished: 2 workers replaced/);
    }
    stop = true;
    await within(Promise.all(loops), 10_000, 'the load loops');
    agent.destroy();
    assert.deepEqual(results.failed, [], `${results.ok} requests succeeded`);
    assert.ok(results.ok > 100, `load was applied (${results.ok} requests)`);
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'exit'), 0);
  });

  it('a reload whose new workers never become ready stops; the old workers keep serving', async () => {
    const marker = join(tmpdir(), `weft-broken-${process.pid}-${Date.now()}`);
    const s = await startSupervisor({ startTimeout: 5_000 }, { BROKEN_MARKER: marker });
    await s.line(started, 'start');
    const before = await get(s.port, '/pid');
    writeFileSync(marker, 'broken');
    try {
      s.child.kill('SIGHUP');
      const failed = await s.line(msg(/^rolling reload failed/), 'the failed reload', 30_000);
      assert.match(String(failed.reason), /worker 0: exited before ready/);
      const after = await get(s.port, '/pid');
      assert.ok('status' in before && 'status' in after && after.status === 200, 'still serving');
    } finally {
      rmSync(marker, { force: true });
    }
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'exit'), 0);
  });

  it('a worker sent SIGTERM alone is told to drain once no stop of the supervisor follows; the other serves meanwhile, and it is started again', async () => {
    const s = await startSupervisor();
    await s.line(started, 'start');
    const pids = new Map<string, number>();
    for (let i = 0; i < 40 && pids.size < 2; i++) {
      const r = await get(s.port, '/pid');
      assert.ok('status' in r, JSON.stringify(r));
      const { pid, index } = JSON.parse(r.body) as { pid: number; index: string };
      pids.set(index, pid);
    }
    assert.equal(pids.size, 2, 'both workers answered');
    const signalled = pids.get('0')!;
    const sentAt = performance.now();
    process.kill(signalled, 'SIGTERM');
    const word = await s.line(
      msg('worker 0 was sent a stop signal of its own: it drains while the others serve'),
      'the word',
    );
    assert.ok(performance.now() - sentAt >= 900, 'the supervisor waited for a stop of its own first');
    assert.equal(word.pid, signalled);
    // Meanwhile, and while it drains, the other worker serves.
    const r = await get(s.port, '/pid');
    assert.ok('status' in r && r.status === 200, JSON.stringify(r));
    const exited = await s.line(msg('worker 0 exited (exit code 0)'), 'its exit');
    await s.line(
      (l) => l.msg === 'worker 0 ready' && s.lines.indexOf(l) > s.lines.indexOf(exited),
      'its restart',
    );
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'supervisor exit'), 0);
  });

  it('a supervisor held back past livenessTimeout reads its workers’ answers before it judges them: none is killed as hung', async () => {
    const s = await startSupervisor({ pingInterval: 100, livenessTimeout: 500 });
    await s.line(started, 'start');
    // SIGSTOP stands for a busy machine or a long collection; the workers answer meanwhile, into the pipe.
    await holdBack(s.child.pid!, 1_500); // three times livenessTimeout
    const r = await get(s.port, '/pid');
    assert.ok('status' in r && r.status === 200, JSON.stringify(r));
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'supervisor exit'), 0);
    const killed = s.lines.filter(msg(/has not answered/));
    assert.deepEqual(killed, [], 'no worker was taken for hung');
  });

  it('a supervisor held back past livenessTimeout, with no answer waiting for it, does not count the hold against its workers', async () => {
    // No stats while it is held (statsInterval 5 s): the only answers are pongs, and it sent no ping during the hold.
    const s = await startSupervisor({ pingInterval: 100, livenessTimeout: 500, statsInterval: 5_000 });
    await s.line(started, 'start');
    await holdBack(s.child.pid!, 1_500);
    // Past another livenessTimeout of the supervisor's own time: hung workers would have been judged by now.
    await new Promise((r) => setTimeout(r, 1_000));
    const r = await get(s.port, '/pid');
    assert.ok('status' in r && r.status === 200, JSON.stringify(r));
    s.child.kill('SIGTERM');
    const code = await within(s.exit, 20_000, 'supervisor exit');
    assert.deepEqual(s.lines.filter(msg(/has not answered/)), [], 'no worker was taken for hung');
    assert.equal(code, 0);
  });

  it('a worker that takes longer than livenessTimeout to start is judged from its readiness on, not killed at once', async () => {
    const s = await startSupervisor(
      { workers: 1, pingInterval: 100, livenessTimeout: 400, statsInterval: 5_000 },
      { START_DELAY_MS: '800' },
    );
    await s.line(started, 'start');
    // Ten ping rounds, served throughout by the same worker (no stats came while it started, to count as answers).
    const first = await get(s.port, '/pid');
    assert.ok('status' in first && first.status === 200, JSON.stringify(first));
    const until = performance.now() + 1_000;
    while (performance.now() < until) {
      const r = await get(s.port, '/pid');
      assert.ok('status' in r && r.status === 200, JSON.stringify(r));
      assert.equal(JSON.parse(r.body).pid, JSON.parse(first.body).pid, 'the same worker');
    }
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'supervisor exit'), 0);
    assert.deepEqual(s.lines.filter(msg(/has not answered/)), [], 'no worker was taken for hung');
  });

  it('a second signal while stopping kills every worker and exits 1', async () => {
    const s = await startSupervisor({ killTimeout: 60_000, repeatSignalWindow: 0 });
    await s.line(started, 'start');
    // A request the worker holds (its headers came back), so the stop has something to wait for.
    let held = () => {};
    const inWorker = new Promise<void>((r) => {
      held = r;
    });
    const hanging = new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port: s.port, path: '/held?ms=60000' }, (res) => {
        res.resume();
        res.on('close', resolve);
        held();
      });
      req.on('error', () => resolve());
      req.end();
    });
    await within(inWorker, 10_000, 'the request in the worker');
    s.child.kill('SIGTERM');
    await s.line(msg('stopping every worker'), 'stopping');
    s.child.kill('SIGINT');
    assert.equal(await within(s.exit, 10_000, 'exit'), 1);
    assert.ok(s.lines.some(msg('SIGINT received again while stopping: killing every worker now')));
    await hanging;
  });

  it('one stop signal delivered twice at once (Ctrl-C under npm start) is one clean stop, exit 0', async () => {
    // Signals of one kind sent at once may merge into one delivery: the second is sent once the first was seen.
    const s = await startSupervisor({ repeatSignalWindow: 10_000 });
    await s.line(started, 'start');
    s.child.kill('SIGINT');
    await s.line(msg('stopping every worker'), 'stopping');
    s.child.kill('SIGINT');
    assert.equal(await within(s.exit, 20_000, 'exit'), 0);
    assert.ok(s.lines.some(msg('SIGINT received again at once: taken as the same stop')));
    assert.ok(!s.lines.some(msg(/killing every worker now/)));
  });
});
