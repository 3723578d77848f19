// The job runner's claim loop against a scripted queue: a slot freed while a claim is in flight is filled at once,
// not at the next poll (which is a minute away here).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EventBus } from '../src/events.ts';
import { silentLogger } from '../src/logger.ts';
import type { Job, JobQueue } from '../src/queue/types.ts';
import { JobRunner } from '../src/runner.ts';

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

const bus: EventBus = {
  publish: async (type, data) => ({ id: 0, type, data, at: 0, pid: 0 }) as never,
  on: () => () => {},
  since: async () => [],
  close: async () => {},
};

describe('JobRunner', () => {
  it('fills a slot freed during a claim at once, not at the next poll', async () => {
    // Claim 1 hands out A. Claim 2 (one slot free) is held open while A finishes and C is queued, then finds
    // nothing. The runner must look again at once: C is waiting and A's slot is free.
    const queued: Job[] = [job(1)];
    const claims: { limit: number }[] = [];
    const secondClaim = deferred();
    const gate2 = deferred();
    const queue = {
      async claim(_owner: string, limit: number) {
        claims.push({ limit });
        if (claims.length === 2) {
          secondClaim.resolve();
          await gate2.promise;
          return [];
        }
        return queued.splice(0, limit);
      },
      heartbeat: async () => [],
      complete: async () => true,
      fail: async () => 'dead' as const,
      release: async () => true,
    } as unknown as JobQueue;
    const finishA = deferred<unknown>();
    const started: number[] = [];
    const cStarted = deferred();
    const runner = new JobRunner({
      queue,
      bus,
      log: silentLogger,
      catalog: undefined as never,
      storage: undefined as never,
      pool: undefined as never,
      config: {
        concurrency: 2,
        pollMs: 60_000,
        leaseMs: 60_000,
        jobTimeoutMs: 60_000,
        limitInputPixels: 1,
        csvMaxBadRows: 0,
      },
      execute: async (j) => {
        started.push(j.id);
        if (j.id === 1) return finishA.promise;
        if (j.id === 3) cStarted.resolve();
        return null;
      },
    });
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
});
