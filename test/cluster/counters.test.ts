// Shared counters (worker.counter): one value for every worker of a supervisor, atomic per call, kept across a
// worker's crash and a rolling reload; a window (ttlMs) that starts the count again; this process's own counters
// when nothing supervises it; arguments checked with ERR_WEFT_INVALID_ARGUMENT.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { CounterStore } from '../../src/cluster/counters.ts';
import { type Supervisor, supervise, worker } from '../../src/cluster/index.ts';
import { eventually, until, within } from '../helpers.ts';
import { freePort } from './helpers.ts';

const exec = new URL('./fixtures/counter-app.ts', import.meta.url);
const quiet = { info() {}, warn() {}, error() {} };

/** A GET on a connection of its own (no keep-alive), so the requests spread over both workers. */
function get(port: number, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return within(
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    }),
    10_000,
    `GET ${path}`,
  );
}

async function withSupervisor(body: (s: Supervisor, port: number) => Promise<void>): Promise<void> {
  const port = await freePort();
  const s = await supervise({
    exec,
    workers: 2,
    env: { PORT: String(port) },
    exit: false,
    handleSignals: false,
    prefixOutput: false,
    logger: quiet,
  });
  try {
    await body(s, port);
  } finally {
    assert.equal(await within(s.stop(), 20_000, 'stop'), 0);
  }
}

/** `n` requests, `concurrency` at a time. */
async function many(n: number, concurrency: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await one(next++);
    }),
  );
}

describe('shared counters under a supervisor', () => {
  it('every worker adds to one value, atomically: 300 concurrent adds make 300, from both workers', async () => {
    await withSupervisor(async (_s, port) => {
      const pids = new Set<unknown>();
      const values: number[] = [];
      await many(300, 16, async () => {
        const { status, body } = await get(port, '/add?name=total');
        assert.equal(status, 200);
        pids.add(body.pid);
        values.push(body.value as number);
      });
      assert.equal(pids.size, 2, 'both workers added');
      assert.deepEqual(
        values.sort((a, b) => a - b),
        Array.from({ length: 300 }, (_, i) => i + 1),
        'each add saw a value of its own: no two the same, none lost',
      );
      assert.equal((await get(port, '/get?name=total')).body.value, 300);
      assert.equal((await get(port, '/add?name=total&n=-100')).body.value, 200, 'negative adds');
      await get(port, '/reset?name=total');
      assert.equal((await get(port, '/get?name=total')).body.value, 0);
    });
  });

  it('a limit of 50 across both workers lets exactly 50 of 100 requests through', async () => {
    await withSupervisor(async (_s, port) => {
      const statuses: number[] = [];
      const pids = new Set<unknown>();
      await many(100, 10, async () => {
        const { status, body } = await get(port, '/limited?name=client-a&limit=50');
        statuses.push(status);
        pids.add(body.pid);
      });
      assert.equal(pids.size, 2);
      assert.equal(statuses.filter((x) => x === 200).length, 50, 'exactly the limit, not twice it');
      assert.equal(statuses.filter((x) => x === 429).length, 50);
    });
  });

  it('keeps the values when a worker crashes and through a rolling reload (they live in the supervisor)', async () => {
    await withSupervisor(async (s, port) => {
      for (let i = 0; i < 10; i++) await get(port, '/add?name=kept');
      const victim = s.status().slots[0]!.pid!;
      process.kill(victim, 'SIGKILL');
      await until(
        () => s.status().slots[0]!.pid !== victim && s.status().slots[0]!.state === 'ready',
        30_000,
        'slot 0 to be replaced',
      );
      assert.equal((await get(port, '/get?name=kept')).body.value, 10, 'after the crash');
      const reloaded = await within(s.reload(), 60_000, 'the reload');
      assert.equal(reloaded.ok, true);
      // Counting goes on during and after it.
      assert.equal((await get(port, '/add?name=kept')).body.value, 11, 'after the reload');
    });
  });

  it('a window: ttlMs starts it with the first add, later adds do not extend it, then the count starts again', async () => {
    await withSupervisor(async (_s, port) => {
      const first = (await get(port, '/add?name=w&ttl=300')).body;
      assert.equal(first.value, 1);
      const resetAt = first.resetAt as number;
      assert.ok(resetAt > Date.now() && resetAt <= Date.now() + 300);
      const second = (await get(port, '/add?name=w&ttl=5000')).body;
      assert.equal(second.value, 2);
      assert.equal(second.resetAt, resetAt, "the window is the first add's");
      await eventually(
        'the window to end',
        async () => (await get(port, '/get?name=w')).body.value === 0,
        5_000,
      );
      const again = (await get(port, '/add?name=w&ttl=300')).body;
      assert.equal(again.value, 1, 'a new window');
      assert.ok((again.resetAt as number) > resetAt);
    });
  });

  it('arguments are checked in the worker: the call rejects with ERR_WEFT_INVALID_ARGUMENT', async () => {
    await withSupervisor(async (_s, port) => {
      const bad = await get(port, '/add?name=x&n=abc');
      assert.equal(bad.status, 500);
      assert.equal(bad.body.code, 'ERR_WEFT_INVALID_ARGUMENT');
      const ttl = await get(port, '/add?name=x&ttl=0');
      assert.equal(ttl.body.code, 'ERR_WEFT_INVALID_ARGUMENT');
      assert.equal((await get(port, '/get?name=x')).body.value, 0, 'nothing was added');
    });
  });
});

describe('shared counters outside a supervisor', () => {
  it("are this process's own, with the same API", async () => {
    const c = worker.counter(`local-${process.pid}`);
    assert.deepEqual(await c.add(), { value: 1, resetAt: undefined });
    assert.equal((await c.add(4)).value, 5);
    assert.equal((await worker.counter(`local-${process.pid}`).get()).value, 5, 'the same counter by name');
    await c.reset();
    assert.equal((await c.get()).value, 0);
    await assert.rejects(c.add(Number.NaN), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
    await assert.rejects(c.add(1, { ttlMs: -5 }), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
    assert.throws(() => worker.counter('has space'), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
    assert.throws(() => worker.counter(''), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
  });

  it('CounterStore: windows by the clock, and a malformed message gets no answer', () => {
    let now = 1_000;
    const store = new CounterStore(() => now);
    assert.deepEqual(store.add('a', 2, 100), { value: 2, resetAt: 1_100 });
    now = 1_099;
    assert.equal(store.get('a').value, 2);
    now = 1_100;
    assert.deepEqual(store.get('a'), { value: 0, resetAt: undefined }, 'expired at resetAt');
    assert.equal(store.size, 0, 'an expired counter is dropped when read');
    const replies: unknown[] = [];
    assert.equal(
      store.onMessage({ weft: 'bus' }, (m) => replies.push(m)),
      false,
      'not a counter message',
    );
    assert.equal(
      store.onMessage({ weft: 'counter', op: 'add', id: 1, name: 'b', n: 'x' } as unknown, (m) =>
        replies.push(m),
      ),
      true,
    );
    assert.equal(replies.length, 0, 'a malformed add is not answered');
    store.onMessage({ weft: 'counter', op: 'add', id: 2, name: 'b', n: 3 }, (m) => replies.push(m));
    assert.deepEqual(replies, [{ weft: 'counter', op: 'result', id: 2, value: 3 }]);
    store.close();
  });
});
