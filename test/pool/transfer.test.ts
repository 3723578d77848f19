import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageChannel } from 'node:worker_threads';
import { isTransferred, Pool, transfer } from '../../src/pool/index.ts';
import { fixture, track, within } from '../helpers.ts';

type Tasks = typeof import('../fixtures/tasks.ts');
const filename = fixture('tasks.ts');

describe('pool zero-copy', () => {
  it('moves a buffer to the task with { transfer } and back with transfer()', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    const bytes = new Uint8Array(16 * 1024 * 1024).fill(10);
    const out = await pool.run('invert', [bytes], { transfer: [bytes.buffer] });
    assert.equal(bytes.byteLength, 0, 'the sender no longer owns the buffer: it was moved, not copied');
    assert.ok(out instanceof Uint8Array);
    assert.equal(out.byteLength, 16 * 1024 * 1024);
    assert.equal(out[0], 245);
    assert.equal(out[out.length - 1], 245);
  });

  it('transfer() marks a value with its list', () => {
    const buf = new ArrayBuffer(8);
    const t = transfer({ buf }, [buf]);
    assert.ok(isTransferred(t));
    assert.deepEqual(t.transferList, [buf]);
    assert.equal(t.value.buf, buf);
    assert.ok(!isTransferred({ value: 1 }));
  });

  it('passes a SharedArrayBuffer through: the task writes memory the caller sees', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 2 }));
    const sab = new SharedArrayBuffer(4 * 1000);
    await Promise.all([pool.run('addShared', [sab, 1]), pool.run('addShared', [sab, 2])]);
    const view = new Int32Array(sab);
    assert.ok(view.every((v) => v === 3));
  });

  it('accepts MessagePorts in transfer, so one task streams to another (a two-stage pipeline)', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 2 }));
    const { port1, port2 } = new MessageChannel();
    const [produced, sum] = await within(
      Promise.all([
        pool.run('produce', [port1, 1000], { transfer: [port1] }),
        pool.run('consume', [port2], { transfer: [port2] }),
      ]),
      10_000,
      'the pipeline',
    );
    assert.equal(produced, 1000);
    assert.equal(sum, (1000 * 1001) / 2);
  });

  it('a task whose moved arguments were lost in a crash is rejected, not re-run with detached data', async () => {
    const pool = track(new Pool<Tasks>({ filename, maxThreads: 1 }));
    await Promise.all(Array.from({ length: 200 }, (_, i) => pool.run('add', [i, i])));
    const bytes = new Uint8Array(1024);
    const crash = pool.run('exit', [1]);
    const moved = pool.run('byteLength', [bytes], { transfer: [bytes.buffer] });
    const plain = pool.run('add', [1, 1]);
    const [c, m, p] = await within(Promise.allSettled([crash, moved, plain]), 10_000, 'settlement');
    assert.equal(c.status, 'rejected');
    // Either it ran before the crash (1024) or it was rejected: never re-run on a zero-length buffer.
    if (m.status === 'fulfilled') assert.equal(m.value, 1024);
    else assert.equal((m.reason as { code?: string }).code, 'ERR_WEFT_WORKER_CRASHED');
    assert.deepEqual(p, { status: 'fulfilled', value: 2 });
  });
});
