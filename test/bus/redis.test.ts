import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { BusEvent } from '../../src/bus/index.ts';
import { RedisTransport, redisTransport } from '../../src/bus/redis.ts';
import { WeftError } from '../../src/errors.ts';
import { invalidOption, rejection, within } from '../helpers.ts';
import { redisSkip, until, World } from './redis-helpers.ts';

type Events = {
  orderPlaced: { orderId: string; total: number };
  job: { n: number };
  big: { n: bigint } | { self: unknown };
};

const skip = await redisSkip();

describe('the Redis Streams transport (machines scope)', { skip }, () => {
  let world: World;
  beforeEach(() => {
    world = new World();
  });
  afterEach(() => world.cleanup());

  test('fans out typed events to every subscriber, on two machines, in order', async () => {
    const a = world.machine<Events>();
    const b = world.machine<Events>();
    const seenA: BusEvent<Events['orderPlaced']>[] = [];
    const seenB: BusEvent<Events['orderPlaced']>[] = [];
    const subA = a.subscribe('orderPlaced', (_, event) => void seenA.push(event));
    const subB = b.subscribe('orderPlaced', (_, event) => void seenB.push(event));
    await within(Promise.all([subA.ready, subB.ready]), 5_000, 'the subscriptions');
    assert.equal(a.scope, 'machines');
    const ids = [];
    for (let i = 1; i <= 3; i++)
      ids.push(await a.publish('orderPlaced', { orderId: `o-${i}`, total: i * 10 }));
    await until('both subscribers to get 3 events', () => seenA.length === 3 && seenB.length === 3);
    for (const seen of [seenA, seenB]) {
      assert.deepEqual(
        seen.map((e) => e.payload),
        [1, 2, 3].map((i) => ({ orderId: `o-${i}`, total: i * 10 })),
      );
      assert.deepEqual(
        seen.map((e) => e.id),
        ids,
      );
      for (const e of seen) {
        assert.equal(e.name, 'orderPlaced');
        assert.equal(e.attempt, 1);
        assert.ok(Math.abs(e.time - Date.now()) < 60_000);
      }
    }
    assert.equal(await world.admin.xlen(`${world.prefix}orderPlaced`), 3);
  });

  test('events() iterates, and in a group acknowledges an event when the loop asks for the next', async () => {
    const bus = world.machine<Events>();
    const events = bus.events('job', { group: 'it' });
    await within(events.ready, 5_000, 'the iterator');
    for (let n = 1; n <= 3; n++) await bus.publish('job', { n });
    const got: number[] = [];
    await within(
      (async () => {
        for await (const event of events) {
          got.push(event.payload.n);
          if (got.length === 3) break; // the third is in hand, not handled
        }
      })(),
      10_000,
      'three events from the iterator',
    );
    assert.deepEqual(got, [1, 2, 3]);
    const [count] = (await world.admin.xpending(`${world.prefix}job`, 'it')) as [number];
    assert.equal(count, 1, 'the first two were acknowledged, the one in hand when the loop broke was not');
  });

  test('a group shares the work: each event handled once, by one of two members', async () => {
    const handled = new Map<number, string[]>();
    const members = ['m1', 'm2'].map((m) => {
      const bus = world.machine<Events>({ batch: 1 });
      const sub = bus.subscribe(
        'job',
        async ({ n }) => {
          handled.set(n, [...(handled.get(n) ?? []), m]);
          await new Promise((r) => setTimeout(r, 5)); // some work, so the other member takes a turn
        },
        { group: 'workers' },
      );
      return { bus, sub };
    });
    await within(Promise.all(members.map((m) => m.sub.ready)), 5_000, 'the members');
    for (let n = 0; n < 20; n++) await members[n % 2]!.bus.publish('job', { n });
    await until('20 events handled', () => handled.size === 20);
    // a handler is counted when it starts; its acknowledgement follows its work
    await until('every event acknowledged', async () => {
      const [pending] = (await world.admin.xpending(`${world.prefix}job`, 'workers')) as [number];
      return pending === 0;
    });
    for (const [n, by] of handled) assert.equal(by.length, 1, `event ${n} handled once, not by ${by}`);
    const by = [...handled.values()].flat();
    assert.ok(by.includes('m1') && by.includes('m2'), `both members got some: ${by}`);
  });

  test('at-least-once: a handler that throws gets the event again, attempt 2, then it is acknowledged', async () => {
    const bus = world.machine<Events>({ retryDelayMs: 50 });
    const seen: BusEvent[] = [];
    const sub = bus.subscribe(
      'job',
      (_, event) => {
        seen.push(event);
        if (seen.length === 1) throw new Error('first time fails');
      },
      { group: 'g' },
    );
    await within(sub.ready, 5_000, 'the subscription');
    const id = await bus.publish('job', { n: 1 });
    await until('the retry', () => seen.length === 2);
    assert.deepEqual(
      seen.map((e) => [e.id, e.attempt]),
      [
        [id, 1],
        [id, 2],
      ],
    );
    await until('the acknowledgement', async () => {
      const [count] = (await world.admin.xpending(`${world.prefix}job`, 'g')) as [number];
      return count === 0;
    });
  });

  test('a member that dies holding an event: another member claims it after claimIdleMs', async (t) => {
    const a = world.machine<Events>({ claimIdleMs: 300 });
    const b = world.machine<Events>({ claimIdleMs: 300 });
    let release!: (err: Error) => void;
    const held = new Promise<never>((_, reject) => {
      release = reject;
    });
    held.catch(() => {});
    t.after(() => release(new Error('the process died'))); // even when an assertion failed: lets A close
    const gotA: BusEvent[] = [];
    const subA = a.subscribe(
      'job',
      (_, event) => {
        gotA.push(event);
        return held; // never settles while "dead"
      },
      { group: 'g' },
    );
    await within(subA.ready, 5_000, 'member A');
    const id = await a.publish('job', { n: 7 });
    await until('member A to hold the event', () => gotA.length === 1);
    const closingA = a.transport.close(); // it waits for the delivery under way: as good as dead
    const gotB: BusEvent[] = [];
    const started = Date.now();
    const subB = b.subscribe('job', (_, event) => void gotB.push(event), { group: 'g' });
    await within(subB.ready, 5_000, 'member B');
    await until('member B to claim the event', () => gotB.length === 1, 10_000);
    assert.ok(Date.now() - started >= 200, 'not before the entry was idle for claimIdleMs');
    assert.equal(gotB[0]!.id, id);
    assert.equal(gotB[0]!.attempt, 2);
    assert.deepEqual(gotB[0]!.payload, { n: 7 });
    await until('member B to acknowledge it', async () => {
      const [count] = (await world.admin.xpending(`${world.prefix}job`, 'g')) as [number];
      return count === 0;
    });
    assert.equal(gotB.length, 1, 'acknowledged once handled: not claimed again');
    assert.equal(await world.admin.exists(`${world.prefix}job:dead`), 0);
    release(new Error('the process died'));
    await within(closingA, 5_000, 'member A to close once its handler settled');
  });

  test("replays from 'first' and from an id, fan-out and group", async () => {
    const bus = world.machine<Events>();
    const ids: string[] = [];
    for (let n = 1; n <= 5; n++) ids.push(await bus.publish('job', { n }));
    const all: number[] = [];
    const after: number[] = [];
    const grouped: number[] = [];
    bus.subscribe('job', ({ n }) => void all.push(n), { from: 'first' });
    bus.subscribe('job', ({ n }) => void after.push(n), { from: ids[1]! });
    bus.subscribe('job', ({ n }) => void grouped.push(n), { group: 'late', from: ids[2]! });
    await until('the replays', () => all.length === 5 && after.length === 3 && grouped.length === 2);
    assert.deepEqual(all, [1, 2, 3, 4, 5]);
    assert.deepEqual(after, [3, 4, 5]);
    assert.deepEqual(grouped, [4, 5]);
    // 'new' (the default) sees only what is published after it subscribed.
    const fresh: number[] = [];
    const sub = bus.subscribe('job', ({ n }) => void fresh.push(n));
    await within(sub.ready, 5_000, 'the subscription');
    await bus.publish('job', { n: 6 });
    await until('the new event', () => fresh.length === 1);
    assert.deepEqual(fresh, [6]);
    await assert.rejects(bus.subscribe('job', () => {}, { from: 'yesterday' }).ready, {
      code: 'ERR_WEFT_INVALID_ARGUMENT',
    });
  });

  test('retention: maxLen trims approximately in the XADD; maxAgeMs drops old entries', async () => {
    const bus = world.machine<Events>({ maxLen: 10 });
    for (let n = 0; n < 250; n++) await bus.publish('job', { n });
    const len = await world.admin.xlen(`${world.prefix}job`);
    // MAXLEN ~ removes whole nodes of the stream (100 entries by default): at least 10 stay, far fewer than 250.
    assert.ok(len >= 10 && len <= 150, `${len} entries kept`);

    const old = `${world.prefix}orderPlaced`;
    for (let i = 1; i <= 100; i++) await world.admin.xadd(old, `1-${i}`, 'p', '{}', 't', '1');
    const aging = world.machine<Events>({ maxLen: Number.POSITIVE_INFINITY, maxAgeMs: 60_000 });
    await aging.publish('orderPlaced', { orderId: 'o', total: 1 });
    const left = await world.admin.xrange(old, '-', '+');
    assert.deepEqual(
      left.map(([, fields]) => fields[1]),
      ['{"orderId":"o","total":1}'],
    );
  });

  test('dead letters: after maxAttempts failed deliveries the entry moves to <name>:dead and is acknowledged', async () => {
    const bus = world.machine<Events>({ maxAttempts: 3, retryDelayMs: 20 });
    const attempts: number[] = [];
    const sub = bus.subscribe(
      'job',
      (_, event) => {
        attempts.push(event.attempt);
        throw new Error(`poison ${event.attempt}`);
      },
      { group: 'g' },
    );
    await within(sub.ready, 5_000, 'the subscription');
    const id = await bus.publish('job', { n: 13 });
    const dead = `${world.prefix}job:dead`;
    await until('the dead letter', async () => (await world.admin.xlen(dead)) === 1);
    assert.deepEqual(attempts, [1, 2, 3]);
    const [[, fields]] = (await world.admin.xrange(dead, '-', '+')) as [[string, string[]]];
    const f = Object.fromEntries(fields.flatMap((_, i) => (i % 2 ? [] : [[fields[i], fields[i + 1]]])));
    assert.equal(f.p, '{"n":13}');
    assert.equal(f.id, id);
    assert.equal(f.group, 'g');
    assert.equal(f.attempts, '3');
    assert.equal(f.error, 'poison 3');
    // the copy is written before the acknowledgement
    await until('the poison entry acknowledged', async () => {
      const [count] = (await world.admin.xpending(`${world.prefix}job`, 'g')) as [number];
      return count === 0;
    });
    assert.deepEqual(attempts, [1, 2, 3], 'not delivered after it went to the dead letters');
  });

  test('a payload that is not JSON-serialisable rejects with ERR_WEFT_INVALID_ARGUMENT', async () => {
    const bus = world.machine<Events>();
    const cycle: { self?: unknown } = {};
    cycle.self = cycle;
    for (const payload of [{ n: 1n }, { self: cycle }]) {
      const err = await rejection(bus.publish('big', payload));
      assert.ok(err instanceof WeftError);
      assert.equal(err.code, 'ERR_WEFT_INVALID_ARGUMENT');
    }
    assert.equal(await world.admin.exists(`${world.prefix}big`), 0, 'nothing was written');
  });

  test('close() ends blocking reads promptly and closes only the connections it opened', async () => {
    const transport = world.transport({ blockMs: 10_000 });
    const client = transport.options.client;
    const fanout = await transport.subscribe({ name: 'job', deliver: () => {} });
    await transport.subscribe({ name: 'job', group: 'g', deliver: () => {} });
    const name = transport.options.consumer;
    await until('both reads to block', async () => (await blockedReads(world, name)) === 2);
    const started = Date.now();
    await within(fanout(), 2_000, 'one subscription to stop');
    await within(transport.close(), 2_000, 'close()');
    assert.ok(Date.now() - started < 2_000, `closed in ${Date.now() - started} ms, not blockMs`);
    await transport.close(); // idempotent
    assert.equal(client.status, 'ready', "the caller's client stays open");
    await until('its connections to be gone', async () => (await connectionsOf(world, name)).length === 0);
    await assert.rejects(transport.publish('job', { n: 1 }), { code: 'ERR_WEFT_BUS_CLOSED' });
  });

  for (const [how, client] of [
    ['ioredis sends the read again', {}],
    ['the read fails and the loop retries', { maxRetriesPerRequest: 0 }],
  ] as const) {
    test(`survives a dropped connection (${how}): events flow again`, async () => {
      const errors: unknown[] = [];
      const bus = world.machine<Events>({ onError: (err) => void errors.push(err) }, client);
      const transport = bus.transport as RedisTransport;
      const fanned: number[] = [];
      const grouped: number[] = [];
      const subs = [
        bus.subscribe('job', ({ n }) => void fanned.push(n)),
        bus.subscribe('job', ({ n }) => void grouped.push(n), { group: 'g' }),
      ];
      await within(Promise.all(subs.map((s) => s.ready)), 5_000, 'the subscriptions');
      await bus.publish('job', { n: 1 });
      await until('the first event', () => fanned.length === 1 && grouped.length === 1);
      const before = await connectionsOf(world, transport.options.consumer);
      assert.equal(before.length, 2);
      for (const { id } of before) await world.admin.client('KILL', 'ID', id);
      await until('both to reconnect', async () => {
        const now = await connectionsOf(world, transport.options.consumer);
        return now.length === 2 && now.every((c) => !before.some((b) => b.id === c.id));
      });
      await bus.publish('job', { n: 2 });
      await until('the event after the drop', () => fanned.length === 2 && grouped.length === 2);
      assert.deepEqual(fanned, [1, 2]);
      assert.deepEqual(grouped, [1, 2]);
      if (client.maxRetriesPerRequest === 0) assert.ok(errors.length >= 2, 'each loop saw its read fail');
      assert.ok(errors.length <= 6, `retried after a backoff, not in a spin: ${errors.length} errors`);
    });
  }

  test('a group whose stream is deleted under it is created again, and events flow', async () => {
    const errors: unknown[] = [];
    const bus = world.machine<Events>({ onError: (err) => void errors.push(err) });
    const got: number[] = [];
    const sub = bus.subscribe('job', ({ n }) => void got.push(n), { group: 'g' });
    await within(sub.ready, 5_000, 'the subscription');
    await bus.publish('job', { n: 1 });
    await until('the first event', () => got.length === 1);
    await world.admin.del(`${world.prefix}job`);
    await until('the loop to see the group gone', () => errors.length > 0);
    await bus.publish('job', { n: 2 });
    await until('the event after the deletion', () => got.length === 2);
    assert.deepEqual(got, [1, 2]);
  });

  test('options are validated at construction', () => {
    const client = world.client();
    assert.throws(() => redisTransport({ client, maxLen: 0 }), invalidOption('maxLen'));
    assert.throws(() => redisTransport({ client, batch: 1.5 }), invalidOption('batch'));
    assert.throws(() => redisTransport({ client, consumer: 'has space' }), invalidOption('consumer'));
    assert.throws(() => redisTransport({ client, claimIdleMs: -1 }), invalidOption('claimIdleMs'));
    assert.throws(() => new RedisTransport({ client: {} as never }), invalidOption('client'));
    const t = redisTransport({ client });
    assert.equal(t.options.prefix, 'weft:bus:');
    assert.equal(t.options.maxLen, 100_000);
    assert.equal(t.options.claimIdleMs, 30_000);
    assert.equal(t.options.blockMs, 1_000);
    assert.equal(t.options.batch, 100);
    assert.equal(t.options.maxAttempts, 10);
    assert.match(t.options.consumer, /^.+:\d+:[0-9a-f]{8}$/);
  });
});

/** The connections a transport opened (their names end with its consumer name). */
async function connectionsOf(world: World, consumer: string): Promise<{ id: string; cmd: string }[]> {
  const list = (await world.admin.client('LIST')) as string;
  return list
    .split('\n')
    .map((line) => Object.fromEntries(line.split(' ').map((kv) => kv.split('=', 2) as [string, string])))
    .filter((c) => c.name?.startsWith('weft-bus:') && c.name.includes(consumer))
    .map((c) => ({ id: c.id!, cmd: c.cmd ?? '' }));
}

async function blockedReads(world: World, consumer: string): Promise<number> {
  return (await connectionsOf(world, consumer)).filter((c) => c.cmd === 'xread' || c.cmd === 'xreadgroup')
    .length;
}
