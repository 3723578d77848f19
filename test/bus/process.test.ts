// weftjs/bus in one process: EventEmitter's semantics (synchronous, in subscription order, the payload itself),
// groups taking turns, the async iterator, abort signals, typed errors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BusEvent, clusterTransport, createBus } from '../../src/bus/index.ts';
import { WeftError } from '../../src/errors.ts';

type Events = {
  orderPlaced: { orderId: string; items: string[] };
  paid: { orderId: string };
};

describe('weftjs/bus, process scope', () => {
  it('delivers every event to every subscriber, synchronously, in order, with the payload object itself', async () => {
    const bus = createBus<Events>({ onError: () => {} });
    assert.equal(bus.scope, 'process');
    const seen: string[] = [];
    const payload = { orderId: 'o-1', items: ['a'] };
    let received: unknown;
    bus.subscribe('orderPlaced', (p) => {
      seen.push(`email ${p.orderId}`);
      received = p;
    });
    bus.subscribe('orderPlaced', (p, e) => seen.push(`inventory ${p.orderId} #${e.id}`));
    assert.equal(bus.emit('orderPlaced', payload), true);
    assert.deepEqual(seen, ['email o-1', 'inventory o-1 #1'], 'synchronous, in subscription order');
    assert.equal(received, payload, 'no copy');
    assert.equal(bus.emit('paid', { orderId: 'o-1' }), false, 'no subscriber');
    const id = await bus.publish('orderPlaced', { orderId: 'o-2', items: [] });
    assert.equal(id, '3', 'ids count the events published, with a subscriber or not: each is unique');
    assert.equal(await bus.publish('paid', { orderId: 'o-2' }), '4', 'no subscriber: a new id all the same');
    assert.equal(seen.length, 4);
    await bus.close();
  });

  it('a throwing handler is reported and does not stop the others', async () => {
    const errors: [unknown, BusEvent][] = [];
    const bus = createBus<Events>({ onError: (err, event) => errors.push([err, event]) });
    const seen: string[] = [];
    bus.subscribe('paid', () => {
      throw new Error('boom');
    });
    bus.subscribe('paid', async () => {
      throw new Error('async boom');
    });
    bus.subscribe('paid', (p) => seen.push(p.orderId));
    bus.emit('paid', { orderId: 'o-9' });
    assert.deepEqual(seen, ['o-9']);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      errors.map(([e, ev]) => `${(e as Error).message} ${ev.name}`),
      ['boom paid', 'async boom paid'],
    );
    // Handlers of the payload alone get no event; the one reported with their error is whole all the same.
    const [[, first], [, second]] = errors as [[unknown, BusEvent], [unknown, BusEvent]];
    assert.equal(first.id, second.id, 'one event, one id');
    assert.match(first.id, /^\d+$/);
    assert.deepEqual(first.payload, { orderId: 'o-9' });
    assert.equal(first.attempt, 1);
    assert.ok(Math.abs(first.time - Date.now()) < 60_000);
    await bus.close();
  });

  it('a group has one member handle each event, taking turns; groups and plain subscribers each get it', async () => {
    const bus = createBus<Events>();
    const by: string[] = [];
    bus.subscribe('paid', () => by.push('a'), { group: 'ship' });
    bus.subscribe('paid', () => by.push('b'), { group: 'ship' });
    bus.subscribe('paid', () => by.push('audit'));
    for (let i = 0; i < 4; i++) bus.emit('paid', { orderId: String(i) });
    assert.deepEqual(by, ['audit', 'a', 'audit', 'b', 'audit', 'a', 'audit', 'b']);
    await bus.close();
  });

  it('events() iterates, and an abort signal or close() ends subscriptions', async () => {
    const bus = createBus<Events>();
    const ac = new AbortController();
    const it = bus.events('paid', { signal: ac.signal });
    await it.ready;
    bus.emit('paid', { orderId: 'x' });
    bus.emit('paid', { orderId: 'y' });
    const got: string[] = [];
    for await (const e of it) {
      got.push(e.payload.orderId);
      if (got.length === 2) ac.abort();
    }
    assert.deepEqual(got, ['x', 'y']);
    assert.equal(bus.emit('paid', { orderId: 'z' }), false, 'the aborted subscription is gone');

    const seen: string[] = [];
    const sub = bus.subscribe('paid', (p) => seen.push(p.orderId));
    await sub.close();
    bus.emit('paid', { orderId: 'after' });
    assert.deepEqual(seen, []);
    await bus.close();
    await assert.rejects(bus.publish('paid', { orderId: 'late' }), { code: 'ERR_WEFT_BUS_CLOSED' });
  });

  it('refuses bad names, groups and handlers with typed errors', async () => {
    const bus = createBus<Record<string, unknown>>();
    assert.throws(() => bus.subscribe('has space', () => {}), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
    assert.throws(() => bus.subscribe('ok', () => {}, { group: '' }), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
    assert.throws(
      () => bus.subscribe('ok', 42 as never),
      (e) => e instanceof WeftError,
    );
    await assert.rejects(bus.publish('', 1), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
    await bus.close();
  });

  it('the cluster transport outside a supervised worker is this process, with the same API', async () => {
    const bus = createBus<Events>({ transport: clusterTransport() });
    assert.equal(bus.scope, 'cluster');
    const seen: string[] = [];
    await bus.subscribe('paid', (p) => seen.push(p.orderId), { group: 'g' }).ready;
    await bus.publish('paid', { orderId: 'solo' });
    assert.deepEqual(seen, ['solo']);
    assert.throws(() => bus.emit('paid', { orderId: 'sync' }), { code: 'ERR_WEFT_INVALID_ARGUMENT' });
    await bus.close();
  });
});
