// weftjs/bus across machines on NATS JetStream: fan-out to every connection, groups sharing work at-least-once
// (redelivery on failure, on a member's death, up to maxAttempts), replay by id, retention, a reconnect, close().
// Each test has a stream and subject prefix of its own and deletes the stream at the end.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { type Bus, type BusEvent, createBus } from '../../src/bus/index.ts';
import { type NatsTransportOptions, natsTransport } from '../../src/bus/nats.ts';
import { WeftError } from '../../src/errors.ts';
import { connectNats, deleteStream, natsSkip, uniqueBus, until, within } from './nats-helpers.ts';

type Events = {
  'order:placed': { n: number };
  'job.run': { n: number };
  tick: number;
};

const skip = await natsSkip();

/** One test's world: connections ("machines") and buses on a stream of its own; `cleanup` closes them all. */
function world() {
  const names = uniqueBus();
  const conns: NatsConnection[] = [];
  const buses: Bus<Events>[] = [];
  return {
    ...names,
    async machine(options: Partial<NatsTransportOptions> = {}) {
      const nc = await connectNats();
      conns.push(nc);
      const bus = createBus<Events>({
        transport: natsTransport({ connection: nc, ...names, retryDelayMs: 20, ...options }),
        onError: () => {},
      });
      buses.push(bus);
      return { nc, bus };
    },
    async cleanup() {
      await Promise.all(buses.map((b) => b.close()));
      if (conns[0]) await deleteStream(conns[0], names.stream);
      await Promise.all(conns.map((c) => c.close()));
    },
  };
}

/** The group consumer of `stream` (a test has one). */
async function groupConsumer(nc: NatsConnection, stream: string) {
  const jsm = await jetstreamManager(nc);
  const all = await jsm.consumers.list(stream).next();
  const durable = all.filter((c) => c.config.durable_name);
  assert.equal(durable.length, 1, 'one durable consumer');
  return durable[0]!;
}

describe('weftjs/bus, machines scope (NATS JetStream)', { skip }, () => {
  it('fans out to buses on separate connections, in order, with the stream sequence as the id', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const a = await w.machine();
    const b = await w.machine();
    assert.equal(a.bus.scope, 'machines');
    const got: Record<'a' | 'b', BusEvent[]> = { a: [], b: [] };
    const subA = a.bus.subscribe('order:placed', (_p, e) => void got.a.push(e));
    const subB = b.bus.subscribe('order:placed', async (_p, e) => {
      await new Promise((resolve) => setImmediate(resolve));
      got.b.push(e);
    });
    await Promise.all([subA.ready, subB.ready]);
    const before = Date.now();
    const ids = [];
    for (let n = 1; n <= 5; n++) ids.push(await a.bus.publish('order:placed', { n }));
    assert.deepEqual(ids, ['1', '2', '3', '4', '5']);
    await until('both machines to get 5 events', () => got.a.length === 5 && got.b.length === 5);
    for (const events of [got.a, got.b]) {
      assert.deepEqual(
        events.map((e) => [e.id, e.name, (e.payload as { n: number }).n, e.attempt]),
        ids.map((id, i) => [id, 'order:placed', i + 1, 1]),
      );
      assert.ok(events.every((e) => e.time >= before - 1_000 && e.time <= Date.now() + 1_000));
    }
    // A dotted name is a subject hierarchy: 'job.run' is its own subject, not part of another.
    const jobs: number[] = [];
    const sub = b.bus.subscribe('job.run', (p) => void jobs.push(p.n));
    await sub.ready;
    await a.bus.publish('job.run', { n: 7 });
    await until('the job.run event', () => jobs.length === 1);
    assert.deepEqual(jobs, [7]);
    assert.equal(got.b.length, 5);
  });

  it('iterates events() on another machine; an event is handled when the loop asks for the next', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const a = await w.machine();
    const b = await w.machine();
    const ac = new AbortController();
    const iterator = b.bus.events('tick', { signal: ac.signal });
    await iterator.ready;
    for (let n = 1; n <= 3; n++) await a.bus.publish('tick', n);
    const seen: number[] = [];
    await within(
      'three events from the iterator',
      (async () => {
        for await (const event of iterator) {
          seen.push(event.payload);
          if (seen.length === 3) break;
        }
      })(),
    );
    assert.deepEqual(seen, [1, 2, 3]);
    ac.abort();
  });

  it('shares a group among members on separate connections: each event once, both members get some', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const members = [await w.machine(), await w.machine()];
    const got: string[][] = [[], []];
    const subs = members.map((m, i) =>
      m.bus.subscribe(
        'job.run',
        async (_p, e) => {
          await new Promise((resolve) => setTimeout(resolve, 5)); // a little work, as a real handler does
          got[i]!.push(e.id);
        },
        { group: 'workers' },
      ),
    );
    await Promise.all(subs.map((s) => s.ready));
    for (let n = 1; n <= 20; n++) await members[0]!.bus.publish('job.run', { n });
    await until('20 events handled', () => got[0]!.length + got[1]!.length >= 20);
    const nc = members[0]!.nc;
    await until('the group to have nothing pending or unacked', async () => {
      const c = await groupConsumer(nc, w.stream);
      const info = await (await jetstreamManager(nc)).consumers.info(w.stream, c.name);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    });
    const all = [...got[0]!, ...got[1]!].map(Number).sort((x, y) => x - y);
    assert.deepEqual(
      all,
      Array.from({ length: 20 }, (_, i) => i + 1),
      'each event exactly once',
    );
    assert.ok(
      got[0]!.length > 0 && got[1]!.length > 0,
      `both members got some: ${got[0]!.length}/${got[1]!.length}`,
    );
  });

  it('delivers again, with attempt 2, an event whose handler failed', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const m = await w.machine();
    const attempts: number[] = [];
    const errors: unknown[] = [];
    const bus = createBus<Events>({ transport: m.bus.transport, onError: (err) => errors.push(err) });
    const sub = bus.subscribe(
      'job.run',
      (_p, e) => {
        attempts.push(e.attempt);
        if (e.attempt === 1) throw new Error('first time fails');
      },
      { group: 'retry' },
    );
    await sub.ready;
    const id = await m.bus.publish('job.run', { n: 1 });
    await until('the second attempt', () => attempts.length === 2);
    assert.deepEqual(attempts, [1, 2]);
    assert.equal(errors.length, 1);
    await until('the event to be acked', async () => {
      const c = await groupConsumer(m.nc, w.stream);
      const info = await (await jetstreamManager(m.nc)).consumers.info(w.stream, c.name);
      return info.num_ack_pending === 0 && info.ack_floor.stream_seq === Number(id);
    });
    assert.deepEqual(attempts, [1, 2]);
    await sub.close();
  });

  it('delivers again an event left in hand when a group iteration breaks', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const m = await w.machine();
    const first = m.bus.events('tick', { group: 'it' });
    await first.ready;
    await m.bus.publish('tick', 1);
    const taken = await within('the first iteration', first.next());
    assert.equal(taken.value?.attempt, 1);
    await first.return?.(); // breaks out: the event in hand was not handled
    const second = m.bus.events('tick', { group: 'it' });
    const again = await within('the event again', second.next());
    assert.equal(again.value?.id, taken.value?.id);
    assert.equal(again.value?.attempt, 2);
    await second.return?.();
  });

  it('gives the event of a member that never acks, and is closed, to another member after ackWaitMs', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const ackWaitMs = 500;
    const a = await w.machine({ ackWaitMs });
    const b = await w.machine({ ackWaitMs });
    const taken = Promise.withResolvers<BusEvent>();
    const subA = a.bus.subscribe(
      'job.run',
      (_p, e) => {
        taken.resolve(e);
        return new Promise(() => {}); // hangs: never acks
      },
      { group: 'g' },
    );
    await subA.ready;
    await a.bus.publish('job.run', { n: 1 });
    const first = await within('member A to take the event', taken.promise);
    assert.equal(first.attempt, 1);
    const redelivered = Promise.withResolvers<BusEvent>();
    const subB = b.bus.subscribe('job.run', (_p, e) => void redelivered.resolve(e), { group: 'g' });
    await subB.ready;
    const closing = Date.now();
    await within('member A to close', a.bus.close(), 5_000);
    assert.ok(Date.now() - closing < ackWaitMs + 1_000, 'close waits at most ackWaitMs for a hung handler');
    assert.equal(a.nc.isClosed(), false, "the caller's connection stays open");
    const second = await within('member B to get the event', redelivered.promise, 5_000);
    assert.equal(second.id, first.id);
    assert.equal(second.attempt, 2);
  });

  it('replays from the first event kept and from an id, fan-out and group', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const m = await w.machine();
    const ids: string[] = [];
    for (let n = 1; n <= 5; n++) ids.push(await m.bus.publish('tick', n));
    const collect = async (from: string, group?: string) => {
      const got: number[] = [];
      const sub = m.bus.subscribe('tick', (n) => void got.push(n), group ? { from, group } : { from });
      await sub.ready;
      return { got, sub };
    };
    const fromFirst = await collect('first');
    const afterThird = await collect(ids[2]!);
    const groupAfterFirst = await collect(ids[0]!, 'replayers');
    const fromNew = await collect('new');
    await until(
      'the replays',
      () => fromFirst.got.length === 5 && afterThird.got.length === 2 && groupAfterFirst.got.length === 4,
    );
    assert.deepEqual(fromFirst.got, [1, 2, 3, 4, 5]);
    assert.deepEqual(afterThird.got, [4, 5]);
    assert.deepEqual(groupAfterFirst.got, [2, 3, 4, 5]);
    await m.bus.publish('tick', 6);
    await until('the new event everywhere', () => fromNew.got.length === 1 && fromFirst.got.length === 6);
    assert.deepEqual(fromNew.got, [6]);
    await assert.rejects(
      collect('nope').then((c) => c.sub.ready),
      { code: 'ERR_WEFT_INVALID_ARGUMENT' },
    );
  });

  it('resumes an existing group where it stopped, whatever `from` says', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const m = await w.machine();
    const got: number[] = [];
    const first = m.bus.subscribe('tick', (n) => void got.push(n), { group: 'resume' });
    await first.ready;
    await m.bus.publish('tick', 1);
    await until('the first event', () => got.length === 1);
    await first.close();
    await m.bus.publish('tick', 2); // while the group has no member
    await m.bus.publish('tick', 3);
    const second = m.bus.subscribe('tick', (n) => void got.push(n), { group: 'resume', from: 'new' });
    await second.ready;
    await until('the events published meanwhile', () => got.length === 3);
    assert.deepEqual(got, [1, 2, 3]);
  });

  it('keeps at most maxMsgs events', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const m = await w.machine({ maxMsgs: 3, maxAgeMs: 3_600_000 });
    for (let n = 1; n <= 5; n++) await m.bus.publish('tick', n);
    const info = await (await jetstreamManager(m.nc)).streams.info(w.stream);
    assert.equal(info.config.max_msgs, 3);
    assert.equal(info.config.max_age, 3_600_000 * 1_000_000);
    assert.deepEqual(info.config.subjects, [`${w.subjectPrefix}.>`]);
    assert.equal(info.state.messages, 3);
    const got: BusEvent[] = [];
    const sub = m.bus.subscribe('tick', (_n, e) => void got.push(e), { from: 'first' });
    await sub.ready;
    await until('the kept events', () => got.length === 3);
    assert.deepEqual(
      got.map((e) => [e.id, e.payload]),
      [
        ['3', 3],
        ['4', 4],
        ['5', 5],
      ],
    );
    // Another bus on the same stream with a new limit updates it.
    const other = await w.machine({ maxMsgs: 2 });
    await other.bus.publish('tick', 6);
    const updated = await (await jetstreamManager(m.nc)).streams.info(w.stream);
    assert.equal(updated.config.max_msgs, 2);
    assert.equal(updated.state.messages, 2);
  });

  it('stops delivering a failing event after maxAttempts', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const m = await w.machine({ maxAttempts: 3 });
    const attempts: number[] = [];
    const sub = m.bus.subscribe(
      'job.run',
      (_p, e) => {
        attempts.push(e.attempt);
        throw new Error('always fails');
      },
      { group: 'doomed' },
    );
    await sub.ready;
    await m.bus.publish('job.run', { n: 1 });
    await until('three attempts', () => attempts.length >= 3);
    await until('the event to be given up', async () => {
      const c = await groupConsumer(m.nc, w.stream);
      const info = await (await jetstreamManager(m.nc)).consumers.info(w.stream, c.name);
      return info.num_ack_pending === 0 && info.num_pending === 0;
    });
    assert.equal((await groupConsumer(m.nc, w.stream)).config.max_deliver, 3);
    assert.deepEqual(attempts, [1, 2, 3]);
  });

  it('rejects a payload that is not JSON, and a name that is no subject, with ERR_WEFT_INVALID_ARGUMENT', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const m = await w.machine();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const bad: unknown[] = [{ n: 1n }, cyclic, { n: () => 1 }, Symbol('s')];
    for (const payload of bad) {
      await assert.rejects(m.bus.publish('tick', payload as number), (err: unknown) => {
        assert.ok(err instanceof WeftError);
        assert.equal(err.code, 'ERR_WEFT_INVALID_ARGUMENT');
        return true;
      });
    }
    await assert.rejects(m.bus.publish('a..b' as 'tick', 1), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
    await assert.rejects(m.bus.subscribe('.a' as 'tick', () => {}).ready, {
      code: 'ERR_WEFT_INVALID_ARGUMENT',
    });
    assert.throws(() => natsTransport({ connection: m.nc, ackWaitMs: -1 }), {
      code: 'ERR_WEFT_INVALID_OPTION',
    });
    assert.throws(() => natsTransport({ connection: m.nc, stream: 'a.b' }), {
      code: 'ERR_WEFT_INVALID_OPTION',
    });
  });

  it('resumes consuming after the client reconnects', async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const a = await w.machine();
    const b = await w.machine();
    const fan: number[] = [];
    const grp: number[] = [];
    const s1 = b.bus.subscribe('tick', (n) => void fan.push(n));
    const s2 = b.bus.subscribe('tick', (n) => void grp.push(n), { group: 'rc' });
    await Promise.all([s1.ready, s2.ready]);
    await a.bus.publish('tick', 1);
    await until('the event before the reconnect', () => fan.length === 1 && grp.length === 1);
    const reconnected = (async () => {
      for await (const s of b.nc.status()) if (s.type === 'reconnect') return;
    })();
    await b.nc.reconnect();
    await within('the reconnect', reconnected);
    await a.bus.publish('tick', 2);
    await a.bus.publish('tick', 3);
    await until('the events after the reconnect', () => fan.length === 3 && grp.length === 3, 20_000);
    assert.deepEqual(fan, [1, 2, 3]);
    assert.deepEqual(grp, [1, 2, 3]);
  });

  it("closes promptly, deletes its fan-out consumers and leaves the caller's connection open", async (t) => {
    const w = world();
    t.after(() => w.cleanup());
    const m = await w.machine();
    const subs = [
      m.bus.subscribe('tick', () => {}),
      m.bus.subscribe('tick', () => {}, { group: 'stays' }),
      m.bus.subscribe('job.run', () => {}, { from: 'first' }),
    ];
    await Promise.all(subs.map((s) => s.ready));
    const jsm = await jetstreamManager(m.nc);
    assert.equal((await jsm.consumers.list(w.stream).next()).length, 3);
    const started = Date.now();
    await within('close', m.bus.close(), 5_000);
    assert.ok(Date.now() - started < 2_000, `close took ${Date.now() - started} ms`);
    await m.bus.close(); // idempotent
    assert.equal(m.nc.isClosed(), false);
    await assert.rejects(m.bus.publish('tick', 1), { code: 'ERR_WEFT_BUS_CLOSED' });
    const left = await jsm.consumers.list(w.stream).next();
    assert.deepEqual(
      left.map((c) => Boolean(c.config.durable_name)),
      [true],
      'only the group (durable) consumer stays',
    );
    // The connection still works, for another bus.
    const again = createBus<Events>({
      transport: natsTransport({ connection: m.nc, stream: w.stream, subjectPrefix: w.subjectPrefix }),
    });
    assert.equal(await again.publish('tick', 1), '1');
    await again.close();
  });
});
