// The file service on weftjs/bus (events/bus.ts) and its node registry (nodes.ts): the cluster scope outside a
// supervisor (this process), and Redis Streams shared by two buses standing for two nodes: every event reaches
// every listener once, `onPublished` sees a process's own events only, a Redis that goes away fails publishes at
// once and the listeners resume without losing what was published meanwhile; heartbeats make, keep, lose and forget
// nodes. Every wait is bounded and names what it waited for.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { type FilesBus, openFilesBus } from '../src/events/bus.ts';
import type { FilesEvent } from '../src/events/types.ts';
import type { Logger } from '../src/logger.ts';
import { silentLogger } from '../src/logger.ts';
import { type NodeProcesses, NodeRegistry } from '../src/nodes.ts';
import { faultProxy } from './fault-proxy.ts';
import { EventLog, until } from './helpers.ts';
import { REDIS_URL, serviceSkip, via } from './services.ts';

const skip = await serviceSkip({ redis: REDIS_URL });

const deleted = (bus: FilesBus, fileId: string) => bus.publish('file.deleted', { fileId });
const completed = (bus: FilesBus, fileId: string) =>
  bus.publish('job.completed', { jobId: 1, fileId, kind: 'image', attempts: 1, ms: 5 });
const fileIds = (events: FilesEvent[]) => events.map((e) => ('fileId' in e.data ? e.data.fileId : '?'));

/** A logger that keeps what it was told. */
function recordingLogger(): Logger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (_obj: object, msg?: string) => void lines.push({ level, msg: msg ?? '' });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

describe('FilesBus in the cluster scope, outside a supervisor: this process', () => {
  it('delivers to listeners of one type and of every type, in order; onPublished; off; close', async () => {
    const bus = await openFilesBus({ log: silentLogger });
    assert.equal(bus.scope, 'cluster');
    const all = new EventLog(bus);
    const onlyCompleted: FilesEvent[] = [];
    const offCompleted = bus.on('job.completed', (e) => onlyCompleted.push(e));
    const own: FilesEvent[] = [];
    const offOwn = bus.onPublished((e) => own.push(e));
    await Promise.all([all.ready, offCompleted.ready]);

    const first = await deleted(bus, 'a');
    await completed(bus, 'b');
    await deleted(bus, 'c');
    await until(() => all.count === 3, 5_000, 'three events to the listener of every type');
    assert.deepEqual(fileIds(all.events), ['a', 'b', 'c']);
    assert.deepEqual(
      all.events.map((e) => e.type),
      ['file.deleted', 'job.completed', 'file.deleted'],
    );
    assert.equal(all.events[0]!.id, first.id, 'the listener sees the id publish resolved with');
    assert.ok(all.events[0]!.at > 0);
    assert.deepEqual(fileIds(onlyCompleted), ['b']);
    assert.deepEqual(fileIds(own), ['a', 'b', 'c']);
    assert.equal(new Set(all.events.map((e) => e.id)).size, 3, 'ids are unique');

    offCompleted();
    offCompleted(); // idempotent
    offOwn();
    await completed(bus, 'd');
    await until(() => all.count === 4, 5_000, 'the fourth event');
    assert.deepEqual(fileIds(onlyCompleted), ['b'], 'nothing after off()');
    assert.deepEqual(fileIds(own), ['a', 'b', 'c'], 'nothing after onPublished off');

    all.close();
    await bus.close();
    await bus.close(); // idempotent
    await assert.rejects(deleted(bus, 'late'), { code: 'ERR_WEFT_BUS_CLOSED' });
  });

  it('a listener that throws is logged and the others still get the event', async () => {
    const log = recordingLogger();
    const bus = await openFilesBus({ log });
    const off = bus.on('file.deleted', () => {
      throw new Error('listener broke');
    });
    const all = new EventLog(bus);
    await Promise.all([off.ready, all.ready]);
    await deleted(bus, 'x');
    await until(() => all.count === 1, 5_000, 'the event to the other listener');
    await until(
      () => log.lines.some((l) => l.level === 'warn' && /listener of file\.deleted failed/.test(l.msg)),
      5_000,
      'the failing listener to be logged',
    );
    off();
    all.close();
    await bus.close();
  });
});

describe('FilesBus on Redis: two nodes', { skip }, () => {
  const queues: string[] = [];
  after(async () => {
    if (queues.length === 0) return;
    const admin = new Redis(REDIS_URL);
    for (const q of queues) {
      const keys = await admin.keys(`bull:${q}:bus:*`);
      if (keys.length) await admin.del(...keys);
    }
    await admin.quit();
  });
  /** A queue URL of its own, so runs do not share streams. */
  const queueUrl = (base = REDIS_URL) => {
    const q = `files-bus-${randomUUID()}`;
    queues.push(q);
    const u = new URL(base);
    u.searchParams.set('queue', q);
    return { url: u.href, queue: q };
  };

  it('every event reaches every node once, with the same id; onPublished is the own node only', async () => {
    const { url, queue } = queueUrl();
    const a = await openFilesBus({ queueUrl: url, log: silentLogger });
    const b = await openFilesBus({ queueUrl: url, log: silentLogger });
    assert.equal(a.scope, 'machines');
    const [onA, onB] = [new EventLog(a), new EventLog(b)];
    const ownA: FilesEvent[] = [];
    const ownB: FilesEvent[] = [];
    a.onPublished((e) => ownA.push(e));
    b.onPublished((e) => ownB.push(e));
    await Promise.all([onA.ready, onB.ready]);
    try {
      const e1 = await deleted(a, 'from-a');
      await completed(b, 'from-b');
      await deleted(a, 'from-a-2');
      for (const [name, log] of [
        ['A', onA],
        ['B', onB],
      ] as const) {
        await until(() => log.count >= 3, 10_000, `node ${name} to hear the three events`);
        assert.equal(log.count, 3, `node ${name}: each event once`);
        assert.deepEqual(fileIds(log.events).sort(), ['from-a', 'from-a-2', 'from-b']);
      }
      // One publisher's events in its order (per stream: two of the same type).
      const fromA = fileIds(onB.events).filter((f) => f.startsWith('from-a'));
      assert.deepEqual(fromA, ['from-a', 'from-a-2']);
      assert.equal(onB.events.find((e) => e.type === 'file.deleted')!.id, e1.id, 'the same id on every node');
      assert.deepEqual(fileIds(ownA), ['from-a', 'from-a-2']);
      assert.deepEqual(fileIds(ownB), ['from-b']);
      const admin = new Redis(REDIS_URL);
      const keys = (await admin.keys(`bull:${queue}:bus:*`)).sort();
      await admin.quit();
      assert.deepEqual(keys, [`bull:${queue}:bus:file.deleted`, `bull:${queue}:bus:job.completed`]);
    } finally {
      onA.close();
      onB.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('keeps about `keep` events per type', async () => {
    const { url, queue } = queueUrl();
    const bus = await openFilesBus({ queueUrl: url, keep: 10, log: silentLogger });
    try {
      for (let i = 0; i < 600; i++) await deleted(bus, `f${i}`);
      const admin = new Redis(REDIS_URL);
      const len = await admin.xlen(`bull:${queue}:bus:file.deleted`);
      await admin.quit();
      // MAXLEN ~ trims whole nodes of the stream (100 entries each by default): about, never far over.
      assert.ok(len < 600 && len <= 200, `${len} entries kept`);
    } finally {
      await bus.close();
    }
  });

  it('Redis away: publish rejects within its deadline; listeners resume and lose nothing published meanwhile', async () => {
    const target = new URL(REDIS_URL);
    const proxy = await faultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const { url } = queueUrl();
    const log = recordingLogger();
    const viaProxy = new URL(url);
    const proxied = new URL(via(REDIS_URL, proxy.port));
    viaProxy.host = proxied.host;
    const a = await openFilesBus({ queueUrl: viaProxy.href, timeoutMs: 1_000, log });
    const b = await openFilesBus({ queueUrl: url, log: silentLogger });
    const all = new EventLog(a);
    await all.ready;
    try {
      await deleted(b, 'before');
      await until(() => fileIds(all.events).includes('before'), 10_000, 'the event before the outage');

      proxy.set('reset');
      const at = Date.now();
      await assert.rejects(deleted(a, 'while-down'));
      assert.ok(Date.now() - at < 5_000, `publish rejected after ${Date.now() - at} ms`);
      for (const id of ['gap1', 'gap2', 'gap3']) await deleted(b, id);

      proxy.set('pass');
      await until(() => fileIds(all.events).includes('gap3'), 20_000, 'the events published while away');
      await deleted(a, 'after');
      await until(() => fileIds(all.events).includes('after'), 10_000, 'an event after the outage');
      // A publish that failed on a cut connection may still have reached Redis (ioredis sends it again on
      // reconnecting): then once, in its place.
      const ids = fileIds(all.events);
      assert.ok(
        ids.filter((f) => f === 'while-down').length <= 1,
        'a failed publish is never delivered twice',
      );
      assert.deepEqual(
        ids.filter((f) => f !== 'while-down'),
        ['before', 'gap1', 'gap2', 'gap3', 'after'],
      );
      const failures = log.lines.filter((l) => /reading the event bus on Redis failed/.test(l.msg));
      assert.ok(failures.length >= 1, 'the failed reads were logged');
      assert.ok(
        failures.length <= 4,
        `logged once a minute per listener, not per retry (${failures.length})`,
      );
    } finally {
      all.close();
      await Promise.all([a.close(), b.close()]);
      await proxy.close();
    }
  });

  it('an unreachable Redis: publish rejects rather than waits, and close() ends it', async () => {
    const bus = await openFilesBus({ queueUrl: 'redis://127.0.0.1:1', timeoutMs: 500, log: silentLogger });
    const at = Date.now();
    await assert.rejects(deleted(bus, 'nowhere'));
    assert.ok(Date.now() - at < 5_000, `rejected after ${Date.now() - at} ms`);
    await bus.close();
  });
});

describe('NodeRegistry over the Redis bus', { skip }, () => {
  const view = (pid: number): NodeProcesses => ({
    scope: 'process',
    slots: [{ index: 0, pid, state: 'ready', uptimeMs: 1_000, restarts: 0, rss: 50_000_000 }],
    pools: [],
  });
  const open = async () => {
    const q = `files-nodes-${randomUUID()}`;
    const url = `${REDIS_URL}?queue=${q}`;
    const buses = [await openFilesBus({ queueUrl: url, log: silentLogger })];
    return {
      streams: `bull:${q}:bus:`,
      buses,
      another: async () => {
        const b = await openFilesBus({ queueUrl: url, log: silentLogger });
        buses.push(b);
        return b;
      },
      async close() {
        await Promise.all(buses.map((b) => b.close()));
        const admin = new Redis(REDIS_URL);
        const keys = await admin.keys(`bull:${q}:bus:*`);
        if (keys.length) await admin.del(...keys);
        await admin.quit();
      },
    };
  };

  it('a node appears with its processes, stays while it beats, and leaves when it stops', async () => {
    const env = await open();
    const busB = await env.another();
    const a = new NodeRegistry({
      bus: env.buses[0]!,
      node: 'node-a',
      view: async () => view(111),
      sends: true,
      intervalMs: 200,
      log: silentLogger,
    });
    const b = new NodeRegistry({
      bus: busB,
      node: 'node-b',
      view: async () => view(222),
      sends: true,
      intervalMs: 200,
      log: silentLogger,
    });
    try {
      const unwatch = b.watch();
      a.start();
      b.start();
      await until(() => b.others().length === 1, 10_000, 'B to hear of A');
      const [seen] = b.others();
      assert.equal(seen!.name, 'node-a');
      assert.equal(seen!.state, 'up');
      assert.equal(seen!.slots[0]!.pid, 111);
      assert.equal(seen!.slots[0]!.rss, 50_000_000);
      assert.ok(
        b.others().every((n) => n.name !== 'node-b'),
        'a node does not list itself',
      );
      // Still there after several intervals, and its time moves on.
      const firstAt = seen!.at;
      await until(() => (b.others()[0]?.at ?? 0) > firstAt, 10_000, "A's next heartbeat");
      assert.equal(b.others()[0]!.state, 'up');
      // Silent for three of its intervals: lost; five minutes: forgotten.
      const at = b.others()[0]!.at;
      assert.equal(b.others(at + 3 * 200 + 1)[0]!.state, 'lost');
      await a.close();
      await until(() => b.others().length === 0, 10_000, 'A to leave when it closes');
      unwatch();
    } finally {
      await Promise.all([a.close(), b.close()]);
      await env.close();
    }
  });

  it('a page opened later sees the nodes at once (the last intervals are read back), and a lost node is forgotten', async () => {
    const env = await open();
    const a = new NodeRegistry({
      bus: env.buses[0]!,
      node: 'node-a',
      view: async () => view(111),
      sends: true,
      intervalMs: 60_000, // one heartbeat now, the next in a minute
      log: silentLogger,
    });
    const watcher = new NodeRegistry({
      bus: await env.another(),
      node: 'watcher',
      view: async () => view(333),
      sends: false,
      log: silentLogger,
      intervalMs: 60_000,
    });
    try {
      a.start();
      const admin = new Redis(REDIS_URL);
      await until(
        async () => (await admin.xlen(`${env.streams}node.seen`)) > 0,
        10_000,
        'the first heartbeat to be stored',
      );
      await admin.quit();
      const unwatch = watcher.watch();
      await until(() => watcher.others().length === 1, 10_000, 'the watcher to read back the last heartbeat');
      const n = watcher.others()[0]!;
      assert.equal(n.name, 'node-a');
      assert.equal(
        watcher.others(n.at + 5 * 60_000 + 1).length,
        0,
        'forgotten after five minutes of silence',
      );
      unwatch();
    } finally {
      await Promise.all([a.close(), watcher.close()]);
      await env.close();
    }
  });

  it("a reload's retired worker saying it leaves does not remove its node; the sender of the last heartbeat does", async () => {
    const env = await open();
    const bus = env.buses[0]!;
    const watcher = new NodeRegistry({
      bus: await env.another(),
      node: 'watcher',
      view: async () => view(1),
      sends: false,
      log: silentLogger,
    });
    const unwatch = watcher.watch();
    try {
      // The watch starts with the stream's last id once its subscription is ready: wait for it through a beat.
      const beat = (pid: number, leaving = false) =>
        bus.bus.publish('node.seen', {
          node: 'n',
          pid,
          intervalMs: 5_000,
          ...(leaving ? { leaving } : {}),
          view: view(pid),
        });
      await until(
        async () => {
          await beat(2); // the new worker of slot 0
          return watcher.others().length === 1;
        },
        10_000,
        'the watcher to hear the node',
      );
      await beat(1, true); // the old worker, retired by the reload, leaves after its successor beat
      await beat(2); // a marker: what was published before it has been delivered
      await until(() => watcher.others()[0]?.slots[0]?.pid === 2, 5_000, 'the marker');
      assert.equal(watcher.others().length, 1, 'the node is still there');
      await beat(2, true);
      await until(() => watcher.others().length === 0, 5_000, 'the node to leave with its last sender');
    } finally {
      unwatch();
      await watcher.close();
      await env.close();
    }
  });
});
