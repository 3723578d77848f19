// The job runner's claim loop against a scripted queue: a slot freed while a claim is in flight is filled at once,
// not at the next poll (which is a minute away here).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FilesBus } from '../src/events/bus.ts';
import { silentLogger } from '../src/logger.ts';
import type { Job, JobQueue } from '../src/queue/types.ts';
import { JobRunner, type RunnerDeps } from '../src/runner.ts';

function job(id: number): Job {
  return {
    id,
    fileId: `f${id}`,
    kind: 'image',
    state: 'active',
    attempts: 1,
    maxAttempts: 1,
    runAt: 0,
    leaseOwner: 'x',
    leaseUntil: null,
    lastError: null,
    errorCode: null,
    result: null,
    payload: null,
    createdAt: 0,
    updatedAt: 0,
    startedAt: 0,
    finishedAt: null,
  };
}

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** `promise`, or a clear failure naming `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Resolves once `ok()` holds, checked every 5 ms; fails naming `what` after `ms`. */
async function until(ok: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const bus: Pick<FilesBus, 'publish'> = {
  publish: async (type, data) => ({ id: '0', type, data, at: 0 }) as never,
};

/** A queue whose claims `claim` answers; every outcome is accepted. */
function scriptedQueue(claim: (limit: number) => Promise<Job[]>): JobQueue {
  return {
    claim: (_owner: string, limit: number) => claim(limit),
    heartbeat: async () => [],
    complete: async () => true,
    fail: async () => 'dead' as const,
    release: async () => true,
  } as unknown as JobQueue;
}

/**
 * A runner on a scripted queue whose jobs run `execute` (the catalog, storage and pool are not used then); polls a
 * minute apart and long leases unless `config` says otherwise.
 */
function scriptedRunner(
  queue: JobQueue,
  execute: NonNullable<RunnerDeps['execute']>,
  config: Partial<RunnerDeps['config']> & { concurrency: number },
  more: Partial<RunnerDeps> = {},
): JobRunner {
  return new JobRunner({
    queue,
    bus,
    log: silentLogger,
    catalog: undefined as never,
    storage: undefined as never,
    pool: undefined as never,
    config: {
      pollMs: 60_000,
      leaseMs: 60_000,
      jobTimeoutMs: 60_000,
      limitInputPixels: 1,
      csvMaxBadRows: 0,
      ...config,
    },
    execute,
    ...more,
  });
}

describe('JobRunner', () => {
  it('fills a slot freed during a claim at once, not at the next poll', async () => {
    // Claim 1 hands out A. Claim 2 (one slot free) is held open while A finishes and C is queued, then finds
    // nothing. The runner must look again at once: C is waiting and A's slot is free.
    const queued: Job[] = [job(1)];
    const claims: { limit: number }[] = [];
    const secondClaim = deferred();
    const gate2 = deferred();
    const queue = scriptedQueue(async (limit) => {
      claims.push({ limit });
      if (claims.length === 2) {
        secondClaim.resolve();
        await gate2.promise;
        return [];
      }
      return queued.splice(0, limit);
    });
    const finishA = deferred<unknown>();
    const started: number[] = [];
    const cStarted = deferred();
    const runner = scriptedRunner(
      queue,
      async (j) => {
        started.push(j.id);
        if (j.id === 1) return finishA.promise;
        if (j.id === 3) cStarted.resolve();
        return null;
      },
      { concurrency: 2 },
    );
    runner.start();
    try {
      // A runs and the loop sleeps (one slot of two used); a wake makes it claim again.
      await new Promise<void>((r) => setImmediate(r));
      assert.deepEqual(started, [1]);
      runner.wake();
      await secondClaim.promise;
      assert.equal(claims[1]?.limit, 1, 'one slot free while A runs');
      // While claim 2 is in flight: A finishes, C is queued.
      finishA.resolve(null);
      queued.push(job(3));
      await new Promise<void>((r) => setImmediate(r));
      gate2.resolve();
      await Promise.race([
        cStarted.promise,
        new Promise((_, reject) =>
          setTimeout(
            () => reject(new Error('C did not start within 5 s: the loop slept through a freed slot')),
            5_000,
          ),
        ),
      ]);
      assert.deepEqual(started, [1, 3]);
    } finally {
      await runner.close();
    }
  });

  it('stops counting a job as held once its lease runs out unrenewed, and runs it to completion once when the queue is back', async () => {
    // The queue's backend goes away while job 1 runs: heartbeats fail. Once the lease (300 ms) has passed the runner
    // must abort the run, record nothing for it (the queue may hand it to another process), free its slot, and, when
    // the queue answers again and hands the job out once more, run it to one completion.
    let down = false;
    let handOut: Job[] = [job(1)];
    const calls = { fail: 0, complete: 0, release: 0, heartbeat: 0 };
    const queue = {
      async claim() {
        if (down) throw new Error('queue unavailable');
        const out = handOut;
        handOut = [];
        return out;
      },
      async heartbeat() {
        calls.heartbeat++;
        if (down) throw new Error('queue unavailable');
        return [];
      },
      async complete() {
        calls.complete++;
        return true;
      },
      async fail() {
        calls.fail++;
        return 'retrying' as const;
      },
      async release() {
        calls.release++;
        return true;
      },
    } as unknown as JobQueue;
    const published: string[] = [];
    const countingBus: Pick<FilesBus, 'publish'> = {
      publish: async (type, data) => {
        published.push(type);
        return bus.publish(type, data);
      },
    };
    const firstStarted = deferred();
    const firstAborted = deferred<unknown>();
    const secondDone = deferred();
    let runs = 0;
    const runner = scriptedRunner(
      queue,
      async (_j, signal) => {
        runs++;
        if (runs === 1) {
          firstStarted.resolve();
          // Never finishes by itself: only the abort ends it.
          return await new Promise((_, reject) =>
            signal.addEventListener('abort', () => {
              firstAborted.resolve(signal.reason);
              reject(signal.reason);
            }),
          );
        }
        secondDone.resolve();
        return { ok: true };
      },
      { concurrency: 1, pollMs: 50, leaseMs: 300 },
      { bus: countingBus, maxBackoffMs: 100 },
    );
    runner.start();
    try {
      await within(firstStarted.promise, 5_000, 'job 1 did not start');
      assert.equal(runner.active, 1);
      down = true;
      const t = Date.now();
      const reason = await within(
        firstAborted.promise,
        5_000,
        'the run was not aborted after its lease ran out',
      );
      assert.equal((reason as Error).name, 'LeaseExpired');
      assert.ok(Date.now() - t >= 200, 'not aborted before the lease could have run out');
      assert.equal(runner.active, 0, 'a job whose lease expired is no longer counted as held');
      assert.deepEqual(
        calls.fail + calls.complete + calls.release,
        0,
        'nothing recorded for the expired run',
      );
      // The queue is back and hands the job out again (its lease expired there too).
      handOut = [job(1)];
      down = false;
      await within(secondDone.promise, 5_000, 'job 1 did not run again once the queue was back');
      await within(runner.idle(), 5_000, 'the runner did not go idle');
      assert.equal(runs, 2);
      assert.equal(calls.complete, 1);
      assert.equal(calls.fail, 0);
      assert.deepEqual(published, ['job.completed'], 'one job.completed, nothing else');
    } finally {
      await runner.close();
    }
  });
  it('gives the slot of a job done with its thread to the next one, with at most `concurrency` finishing', async () => {
    // concurrency 1. A computes, then says so and waits on its "storing" (held open). B must start meanwhile; C must
    // not while B computes, nor once B too is finishing (two finishing is one past the bound of 1).
    const queued: Job[] = [job(1), job(2), job(3)];
    const claims: number[] = [];
    const queue = scriptedQueue(async (limit) => {
      claims.push(limit);
      return queued.splice(0, limit);
    });
    const started: number[] = [];
    const storing = new Map<number, ReturnType<typeof deferred<void>>>();
    const computedB = deferred();
    const bStarted = deferred();
    const cStarted = deferred();
    const runner = scriptedRunner(
      queue,
      async (j, _signal, computed) => {
        started.push(j.id);
        if (j.id === 2) {
          bStarted.resolve();
          await computedB.promise;
        }
        if (j.id === 3) {
          cStarted.resolve();
          return null;
        }
        computed();
        const gate = deferred();
        storing.set(j.id, gate);
        await gate.promise;
        return null;
      },
      { concurrency: 1 },
    );
    runner.start();
    try {
      await within(bStarted.promise, 5_000, 'B did not start while A was storing its outputs');
      assert.deepEqual(started, [1, 2]);
      assert.equal(runner.active, 2, 'A (finishing) and B (computing) are both held');
      // B is done computing too: two finishing, one past the bound, so C waits (the loop does not even ask).
      const asked = claims.length;
      computedB.resolve();
      await until(() => storing.has(2), 5_000, 'B never reached its storing');
      runner.wake();
      await new Promise<void>((r) => setImmediate(r));
      assert.equal(claims.length, asked, 'no claim while two jobs are finishing with concurrency 1');
      assert.deepEqual(started, [1, 2]);
      // A's outcome is recorded: its place frees, C starts.
      storing.get(1)!.resolve();
      await within(cStarted.promise, 5_000, 'C did not start once A was done');
      assert.deepEqual(started, [1, 2, 3]);
      storing.get(2)!.resolve();
      await within(runner.idle(), 5_000, 'the runner did not go idle');
    } finally {
      // Whatever failed, nothing is left waiting on this test's gates.
      computedB.resolve();
      for (const gate of storing.values()) gate.resolve();
      await runner.close();
    }
  });

  it('fails a job whose kind no processor here runs with ERR_WEFT_FILES_PROCESSOR_UNKNOWN, to be retried elsewhere', async () => {
    // A plug-in configured on another node (or removed from this one's configuration): its job is not run as some
    // other processor's, and not dead at once either, so a retry may land on a process that has the plug-in.
    const failed: { error: { code?: string; message: string }; permanent: boolean }[] = [];
    const gotFailure = deferred();
    let handOut: Job[] = [{ ...job(1), kind: 'pdf-text', maxAttempts: 3 }];
    const queue = {
      ...scriptedQueue(async () => {
        const out = handOut;
        handOut = [];
        return out;
      }),
      async fail(_job: Job, _owner: string, error: { code?: string; message: string }, permanent: boolean) {
        failed.push({ error, permanent });
        gotFailure.resolve();
        return 'retrying' as const;
      },
    } as unknown as JobQueue;
    const runner = scriptedRunner(queue, async () => null, { concurrency: 1 }, { execute: undefined });
    runner.start();
    try {
      await within(gotFailure.promise, 5_000, 'the job of an unknown kind was not failed');
      assert.equal(failed.length, 1);
      assert.equal(failed[0]!.error.code, 'ERR_WEFT_FILES_PROCESSOR_UNKNOWN');
      assert.match(failed[0]!.error.message, /No processor "pdf-text"/);
      assert.equal(failed[0]!.permanent, false);
    } finally {
      await runner.close();
    }
  });
});
