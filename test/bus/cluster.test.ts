// weftjs/bus across the workers of one `weft start`: fan-out in publish order to every worker, a group handling
// each event once, and a rolling reload (while events are published) losing none of them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { killStarted, runWeft, startWeft } from '../cli/helpers.ts';
import { freePort } from '../cluster/helpers.ts';
import { eventually, readJsonLines, within } from '../helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'weft-bus-cluster-'));
const app = new URL('./fixtures/bus-app.ts', import.meta.url).pathname;
after(() => {
  killStarted();
  rmSync(dir, { recursive: true, force: true });
});

interface Line {
  pid: number;
  kind: 'ping' | 'job';
  n: number;
  from?: number;
  attempt?: number;
}

const lines = (log: string) => readJsonLines<Line>(log);

async function publish(port: number, name: string, count: number, start: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/publish?name=${name}&count=${count}&start=${start}`);
    await res.text();
    return res.ok;
  } catch {
    return false;
  }
}

describe('weftjs/bus, cluster scope (weft start --workers 2)', () => {
  it('fans out to every worker in publish order, shares a group, and loses nothing across a reload', async () => {
    const log = join(dir, 'handled.jsonl');
    const port = await freePort();
    const env = { ...process.env, PORT: String(port), BUS_LOG: log, WEFT_RUNTIME_DIR: join(dir, 'run') };
    const w = await startWeft([app, '--workers', '2', '--name', 'bustest'], { env });
    // What the supervisor warned of, said with a failure: which worker exited, what a reload said.
    const said = () =>
      w
        .output()
        .split('\n')
        .filter((l) => /"level":(40|50|60)|"level":"(warn|error)"/.test(l))
        .slice(-12)
        .join('\n');
    let stop = false;
    let load: Promise<void> = Promise.resolve();
    try {
      // Fan-out: 30 pings published by one worker reach both, each in publish order.
      assert.ok(await publish(port, 'ping', 30, 0), 'publishing the pings');
      await eventually(
        '60 ping deliveries',
        () => lines(log).filter((l) => l.kind === 'ping').length === 60,
        15_000,
      );
      const pings = lines(log).filter((l) => l.kind === 'ping');
      const pids = [...new Set(pings.map((l) => l.pid))];
      assert.equal(pids.length, 2, 'both workers');
      for (const pid of pids) {
        assert.deepEqual(
          pings.filter((l) => l.pid === pid).map((l) => l.n),
          Array.from({ length: 30 }, (_, i) => i),
          `worker ${pid} got every ping, in order`,
        );
      }

      // A group: 40 jobs, each handled once, by both workers between them.
      assert.ok(await publish(port, 'job', 40, 0), 'publishing the jobs');
      await eventually(
        '40 jobs handled',
        () => lines(log).filter((l) => l.kind === 'job').length >= 40,
        15_000,
      );
      const jobs = lines(log).filter((l) => l.kind === 'job');
      assert.deepEqual(
        [...new Set(jobs.map((l) => l.n))].sort((a, b) => a - b),
        Array.from({ length: 40 }, (_, i) => i),
      );
      assert.equal(jobs.length, 40, 'each once');
      assert.equal(new Set(jobs.map((l) => l.pid)).size, 2, 'shared');

      // A worker that dies holding a group's event: another member gets it (attempt 2), and its slot is restarted.
      const crashed = await fetch(
        `http://127.0.0.1:${port}/publish?name=job&count=1&start=500&crash=1`,
      ).catch(() => undefined);
      await crashed?.text().catch(() => {});
      await eventually(
        'the crashed job handled',
        () => lines(log).some((l) => l.kind === 'job' && l.n === 500),
        15_000,
      );
      const retried = lines(log).filter((l) => l.kind === 'job' && l.n === 500);
      assert.equal(retried.length, 1);
      assert.equal(retried[0]!.attempt, 2, 'delivered again after the first member died');

      // A rolling reload while jobs are published, and on after it returns: every published job is handled.
      const published = new Set<number>();
      let next = 1_000;
      load = (async () => {
        while (!stop) {
          const start = next;
          next += 5;
          if (await publish(port, 'job', 5, start)) for (let i = 0; i < 5; i++) published.add(start + i);
        }
      })();
      const reload = await runWeft(['reload', '--name', 'bustest'], env);
      assert.equal(reload.code, 0, reload.stdout + reload.stderr);
      const after = next;
      await eventually('publishing on after the reload', () => next >= after + 50, 15_000);
      stop = true;
      await load;
      assert.ok(published.size >= 100, `published ${published.size}`);
      const handled = () =>
        new Set(
          lines(log)
            .filter((l) => l.kind === 'job')
            .map((l) => l.n),
        );
      await eventually(
        `every published job handled (missing ${[...published].filter((n) => !handled().has(n)).slice(0, 10)})`,
        () => [...published].every((n) => handled().has(n)),
        20_000,
      );
    } catch (err) {
      // Whatever step failed, with what the supervisor warned of meanwhile.
      if (err instanceof Error) err.message += `\n${said()}`;
      throw err;
    } finally {
      stop = true;
      await load;
      w.child.kill('SIGTERM');
      assert.equal(
        await within(w.exit, 30_000, 'weft start to exit'),
        0,
        `weft start's exit code\n${said()}`,
      );
    }
  });
});
