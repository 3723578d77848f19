// SyncBarrier: concurrent syncs of one path share fsyncs, and each caller is covered by an fsync that started after
// its call (group commit).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SyncBarrier } from '../src/fsync.ts';

/** A fake fsync whose calls are settled by the test. */
function controlled() {
  const calls: { path: string; resolve: () => void; reject: (err: Error) => void }[] = [];
  const fsync = (path: string) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ path, resolve, reject });
    });
  return { calls, fsync };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('SyncBarrier', () => {
  it('starts one fsync at once, and one more after it for every caller that came while it ran', async () => {
    const { calls, fsync } = controlled();
    const barrier = new SyncBarrier(fsync);
    const done: number[] = [];
    const first = barrier.sync('/d').then(() => done.push(1));
    assert.equal(calls.length, 1);
    // These came while the first fsync ran: it may have started before their writes, so it does not cover them.
    const later = [2, 3, 4].map((n) => barrier.sync('/d').then(() => done.push(n)));
    await tick();
    assert.equal(calls.length, 1, 'no second fsync while the first runs');
    calls[0]!.resolve();
    await first;
    await tick();
    assert.deepEqual(done, [1], 'the later callers wait for an fsync that starts after them');
    assert.equal(calls.length, 2, 'one fsync for the three of them');
    calls[1]!.resolve();
    await Promise.all(later);
    assert.deepEqual(done, [1, 2, 3, 4]);
    // Idle again: the next caller starts its own at once.
    const again = barrier.sync('/d');
    assert.equal(calls.length, 3);
    calls[2]!.resolve();
    await again;
  });

  it('keeps paths apart, and fails the callers of a failed fsync only', async () => {
    const { calls, fsync } = controlled();
    const barrier = new SyncBarrier(fsync);
    const a = barrier.sync('/a');
    const b = barrier.sync('/b');
    assert.deepEqual(
      calls.map((c) => c.path),
      ['/a', '/b'],
    );
    const waiting = barrier.sync('/a');
    calls[0]!.reject(Object.assign(new Error('EIO'), { code: 'EIO' }));
    await assert.rejects(a, /EIO/);
    calls[1]!.resolve();
    await b;
    await tick();
    assert.equal(calls.length, 3, 'the caller that came later gets a new fsync, not the failed one');
    calls[2]!.resolve();
    await waiting;
  });

  it('syncs real files and directories by default', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-fsync-'));
    try {
      writeFileSync(join(dir, 'f'), 'x');
      const barrier = new SyncBarrier();
      await Promise.all([barrier.sync(dir), barrier.sync(join(dir, 'f')), barrier.sync(dir)]);
      await assert.rejects(barrier.sync(join(dir, 'missing')), { code: 'ENOENT' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
