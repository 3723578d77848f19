// Reloads and stops that lose nothing: `weft start` runs an app on 2 workers while three clients (node:http with a
// keep-alive Agent, undici's fetch, stock autocannon) send requests back to back; a reload or a stop happens, and the
// load runs on for at least 1 s after it returned. Not one reset nor failed answer is allowed, for an app drained by
// weft/lifecycle, for one with no Weft code, and for fastify; a reload refuses no connection either.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { killStarted, runWeft, startWeft } from '../cli/helpers.ts';
import { until, within } from '../helpers.ts';
import { freePort } from './helpers.ts';
import { CLIENTS, losses, startLoad } from './load.ts';

const runtime = mkdtempSync(join(tmpdir(), 'weft-zero-loss-'));
const env = { ...process.env, WEFT_RUNTIME_DIR: join(runtime, 'run') };
after(() => {
  killStarted();
  rmSync(runtime, { recursive: true, force: true });
});

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const APPS = {
  lifecycle: fixture('app.ts'),
  none: fixture('plain-app.mjs'),
  fastify: fixture('fastify-app.mjs'),
} as const;

/** Load kept running after the event returned. */
const AFTER_MS = 1_000;

type Event =
  | 'two reloads back to back'
  | 'two reloads 1 s apart'
  | 'weft stop'
  | 'SIGINT to the group'
  | 'SIGTERM to the group'
  | 'SIGTERM to the workers, the supervisor 300 ms later'
  | 'SIGTERM to the group, the supervisor held back 1.5 s';
const EVENTS: Event[] = [
  'two reloads back to back',
  'two reloads 1 s apart',
  'weft stop',
  'SIGINT to the group',
  'SIGTERM to the group',
  // The order a stop signal reaches the processes of a group is not promised (and a busy machine or a collection
  // can hold the supervisor back): workers that stop accepting before their supervisor closed the shared listening
  // socket leave the connections it accepted meanwhile to no one. A 100 ms wait in the worker was not enough.
  'SIGTERM to the workers, the supervisor 300 ms later',
  // A supervisor that a busy machine or a long collection holds back for longer than a worker would wait for its word
  // (SIGSTOP stands for it): the workers must not stop accepting while it still listens.
  'SIGTERM to the group, the supervisor held back 1.5 s',
];

/** The pids of the workers `weft status --json` lists. */
async function workerPids(name: string): Promise<number[]> {
  const r = await runWeft(['status', '--name', name, '--json'], env);
  const pids = (JSON.parse(r.stdout) as { slots: { pid?: number }[] }).slots.map((s) => s.pid);
  assert.ok(pids.length === 2 && pids.every((p) => typeof p === 'number'), r.stdout);
  return pids as number[];
}

let names = 0;

for (const [appName, app] of Object.entries(APPS)) {
  describe(`zero loss, app with ${appName === 'lifecycle' ? 'weftjs/lifecycle' : appName === 'none' ? 'no Weft code' : 'fastify'}`, () => {
    for (const event of EVENTS) {
      it(`${event}: 0 resets and 0 failed for ${CLIENTS.join(', ')}, load on for 1 s after`, async () => {
        const name = `zl${process.pid}-${++names}`;
        const port = await freePort();
        const weft = await startWeft([app, '--workers', '2', '--name', name, '--kill-timeout', '10s'], {
          env: { ...env, PORT: String(port) },
        });
        const load = startLoad({ port, connections: 8, maxMs: 30_000 });
        try {
          // Every client is served before anything happens.
          await until(() => CLIENTS.every((c) => load.counts()[c].ok >= 20), 10_000, 'every client served');
          const stopping = event !== 'two reloads back to back' && event !== 'two reloads 1 s apart';
          if (event === 'two reloads back to back') {
            for (let i = 0; i < 2; i++) {
              const r = await runWeft(['reload', '--name', name], env);
              assert.equal(r.stdout.trim(), 'reloaded: 2 workers replaced', r.stderr);
            }
          } else if (event === 'two reloads 1 s apart') {
            const first = await runWeft(['reload', '--name', name], env);
            assert.equal(first.stdout.trim(), 'reloaded: 2 workers replaced', first.stderr);
            const served = load.counts().agent.ok;
            await new Promise((r) => setTimeout(r, 1_000)); // the load goes on meanwhile: the gap is the scenario
            assert.ok(load.counts().agent.ok > served, 'served between the reloads');
            const second = await runWeft(['reload', '--name', name], env);
            assert.equal(second.stdout.trim(), 'reloaded: 2 workers replaced', second.stderr);
          } else if (event === 'weft stop') {
            const r = await runWeft(['stop', '--name', name], env);
            assert.equal(r.stdout.trim(), 'stopped (exit code 0)', r.stderr);
          } else if (event === 'SIGTERM to the workers, the supervisor 300 ms later') {
            for (const pid of await workerPids(name)) process.kill(pid, 'SIGTERM');
            // The delay is the scenario: the supervisor hears the stop late.
            await new Promise((r) => setTimeout(r, 300));
            process.kill(weft.child.pid!, 'SIGTERM');
          } else if (event === 'SIGTERM to the group, the supervisor held back 1.5 s') {
            process.kill(weft.child.pid!, 'SIGSTOP');
            try {
              process.kill(-weft.child.pid!, 'SIGTERM');
              await new Promise((r) => setTimeout(r, 1_500)); // the hold is the scenario
            } finally {
              process.kill(weft.child.pid!, 'SIGCONT');
            }
          } else {
            process.kill(-weft.child.pid!, event.startsWith('SIGINT') ? 'SIGINT' : 'SIGTERM');
          }
          if (stopping) {
            assert.equal(await within(weft.exit, 20_000, 'weft start to exit'), 0, weft.output());
          }
          const mark = CLIENTS.map((c) => load.counts()[c].ok + load.counts()[c].refused);
          await new Promise((r) => setTimeout(r, AFTER_MS)); // the load runs on past the event: that is the test
          const counts = await load.stop();
          // The load really ran on after the event (served by new workers, or refused once nobody listens).
          CLIENTS.forEach((c, i) => {
            const now = counts[c].ok + counts[c].refused;
            assert.ok(now > mark[i]!, `${c} kept sending after the event (${JSON.stringify(counts[c])})`);
          });
          assert.deepEqual(losses(counts), [], JSON.stringify(counts));
          if (!stopping) {
            for (const c of CLIENTS)
              assert.equal(counts[c].refused, 0, `${c}: no refused connection in a reload`);
          }
        } finally {
          await load.stop();
          if (weft.child.exitCode === null) {
            process.kill(-weft.child.pid!, 'SIGKILL');
            await within(weft.exit, 10_000, 'weft start to be killed');
          }
        }
      });
    }
  });
}
