// A supervisor killed outright (SIGKILL, the kernel's OOM killer, a test runner's timeout) cannot stop its workers.
// They must see it is gone and leave by themselves, or they keep the port, their jobs and their memory with no one
// to stop them. (A worker that lingered was seen once after a CI run; its cause was not found, and this does not
// reproduce it: it keeps the guarantee from regressing.)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { Agent, type ClientRequest, request } from 'node:http';
import { after, describe, it } from 'node:test';
import { until } from '../helpers.ts';
import { killAll, startSupervisor } from './helpers.ts';

after(killAll);

const started = (l: Record<string, unknown>) => Array.isArray(l.started);

/**
 * The live processes of a process group (the supervisor's: it starts detached, its workers are in its group), zombies
 * left out: an orphan that exited may wait for a reaper that this sandbox does not have.
 */
function group(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // After the command's closing parenthesis: state, ppid, pgrp, ...
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') out.push(Number(name));
    } catch {}
  }
  return out;
}

describe('a supervisor killed with SIGKILL', () => {
  it('leaves no worker behind: idle workers leave at once', async () => {
    const s = await startSupervisor();
    await s.line(started, 'start');
    const pgid = s.child.pid!;
    const workers = group(pgid).filter((pid) => pid !== pgid);
    assert.equal(workers.length, 2, 'two workers in the supervisor’s group');
    process.kill(pgid, 'SIGKILL');
    await until(
      () => group(pgid).length === 0,
      10_000,
      `the workers (${workers.join(', ')}) to exit after their supervisor`,
    );
  });

  it('leaves no worker behind when it dies during a reload: old (draining), new and starting ones all leave', async () => {
    // The held requests last 60 s, so an old worker is still draining when the supervisor dies. Node's cluster
    // worker exits when its IPC channel is lost unless it asked to leave itself; this test is there so that nothing
    // weft adds (a drain, a lifecycle, the agent) ever keeps one alive past that.
    const s = await startSupervisor({ workers: 2 });
    await s.line(started, 'start');
    const pgid = s.child.pid!;
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const held: ClientRequest[] = [];
    try {
      await Promise.all(
        Array.from(
          { length: 4 },
          () =>
            new Promise<void>((resolve, reject) => {
              const req = request(
                { host: '127.0.0.1', port: s.port, path: '/held?ms=60000', agent },
                (res) => {
                  res.resume();
                  res.on('error', () => {});
                  resolve();
                },
              );
              req.on('error', reject);
              req.end();
              held.push(req);
            }),
        ),
      );
      s.child.kill('SIGHUP');
      // Once a new worker is ready, an old one drains (rolling: one slot at a time).
      const replaced = await s.line(
        (l) => typeof l.msg === 'string' && /^worker \d+ replaced \(reload\)/.test(l.msg),
        'a worker replaced during the reload',
        30_000,
      );
      assert.ok(
        group(pgid).includes(Number(replaced.old)),
        'the old worker is still draining its held requests',
      );
      process.kill(pgid, 'SIGKILL');
      await until(
        () => group(pgid).length === 0,
        20_000,
        'every worker (old, new and starting) to exit after its supervisor',
      ).catch((err: Error) => {
        throw new Error(`${err.message}; left: ${group(pgid).join(', ')}`);
      });
    } finally {
      for (const req of held) req.destroy();
      agent.destroy();
    }
  });
});
