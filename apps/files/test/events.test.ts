// The EventBus contract, run against the embedded SQLite bus and the Redis one alike: two buses on one store stand
// for two processes (or machines). Ids in one order across publishers, delivery exactly once, filters, `since`,
// unsubscribing, closing; for Redis also trimming, an unreachable server and a connection that drops and returns.
// Every wait is bounded and names what it waited for.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { openDatabase, retryBusy } from '../src/db.ts';
import type { EventBus, EventType, FilesEvent } from '../src/events.ts';
import { SqliteEventBus } from '../src/events.ts';
import { RedisEventBus, type RedisEventBusOptions } from '../src/events-redis.ts';
import { REDIS_URL, serviceSkip } from './services.ts';

const src = new URL('../src/', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'files-events-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Pair {
  a: EventBus;
  b: EventBus;
  /** Whether `a` has a tail reading other processes' events; undefined when that cannot be seen from outside. */
  tailing?: () => Promise<boolean>;
  /** A module that makes such a pair, listens, exchanges an event, closes, and leaves the process to exit. */
  script: string;
  close(): Promise<void>;
}

/**
 * The other process of a SQLite pair: a real one, since SqliteEventBus tells processes apart by pid. It publishes
 * and reads on request over the IPC channel; `on` is not needed from it.
 */
async function childSqliteBus(path: string): Promise<EventBus> {
  const script = `
    import { openDatabase, retryBusy } from ${JSON.stringify(`${src}db.ts`)};
    import { SqliteEventBus } from ${JSON.stringify(`${src}events.ts`)};
    const db = openDatabase(${JSON.stringify(path)});
    const bus = retryBusy(new SqliteEventBus(db, { pollMs: 20 }), { timeoutMs: 10_000 });
    process.on('message', async ({ id, op, args }) => {
      try {
        const value = op === 'close' ? await bus.close() : await bus[op](...args);
        if (op === 'close') db.close();
        process.send({ id, value: value ?? null });
        if (op === 'close') process.disconnect();
      } catch (err) {
        process.send({ id, error: String(err) });
      }
    });
    process.send({ ready: true });
  `;
  const child = spawn(process.execPath, ['--conditions=weft-source', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 0;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await within('the SQLite child process to start', 20_000, (resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`the child exited with ${code}`)));
  });
  child.on('message', (m: { id: number; value?: unknown; error?: string }) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error !== undefined) p?.reject(new Error(m.error));
    else p?.resolve(m.value);
  });
  const call = <T>(op: string, ...args: unknown[]) =>
    within<T>(`the child's ${op}`, 10_000, (resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ id, op, args });
    });
  let closing: Promise<void> | undefined;
  return {
    publish: (type, data) => call<FilesEvent>('publish', type, data),
    since: (id, limit) => call<FilesEvent[]>('since', id, ...(limit === undefined ? [] : [limit])),
    on() {
      throw new Error('not used from the child process');
    },
    close() {
      closing ??= (async () => {
        await call('close');
        await within('the child process to exit', 10_000, (resolve) => exited.then(resolve));
      })();
      return closing;
    },
  };
}

async function sqlitePair(): Promise<Pair> {
  const path = join(dir, `${randomUUID()}.db`);
  const db = openDatabase(path);
  // As service.ts wires it: two processes writing at once wait for each other asynchronously (db.ts).
  const a = retryBusy(new SqliteEventBus(db, { pollMs: 20 }), { timeoutMs: 10_000 });
  const b = await childSqliteBus(path);
  return {
    a,
    b,
    script: `
      import { openDatabase } from ${JSON.stringify(`${src}db.ts`)};
      import { SqliteEventBus } from ${JSON.stringify(`${src}events.ts`)};
      const db = openDatabase(${JSON.stringify(path)});
      const a = new SqliteEventBus(db, { pollMs: 20 });
      const seen = new Promise((resolve) => a.on('*', (e) => e.data.fileId === 'child' && resolve()));
      await a.publish('file.deleted', { fileId: 'child' });
      await seen;
      await Promise.all([a.close(), a.close()]);
      db.close();
      console.log('closed');
    `,
    async close() {
      await Promise.all([a.close(), b.close()]);
      db.close();
    },
  };
}

async function redisPair(
  options: RedisEventBusOptions = {},
): Promise<Pair & { admin: Redis; stream: string }> {
  const stream = `weft-files-test:${randomUUID()}`;
  const o = { stream, blockMs: 300, ...options };
  const a = await RedisEventBus.open(REDIS_URL, o);
  const b = new RedisEventBus(REDIS_URL, o); // lazy: its first publish connects
  const admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  admin.on('error', () => {});
  return {
    a,
    b,
    admin,
    stream,
    async tailing() {
      const clients = String(await admin.client('LIST'));
      return clients.includes(` name=${stream}:tail `);
    },
    script: `
      import { RedisEventBus } from ${JSON.stringify(`${src}events-redis.ts`)};
      const o = ${JSON.stringify(o)};
      const a = await RedisEventBus.open(${JSON.stringify(REDIS_URL)}, o);
      const b = new RedisEventBus(${JSON.stringify(REDIS_URL)}, o);
      const seen = new Promise((resolve) => a.on('*', (e) => e.data.fileId === 'child' && resolve()));
      await a.since(Number.MAX_SAFE_INTEGER, 1);
      await b.publish('file.deleted', { fileId: 'child' });
      await seen;
      // A bus whose Redis never answered leaves nothing running either.
      await RedisEventBus.open('redis://127.0.0.1:1', { timeoutMs: 500 }).catch(() => {});
      const gone = new RedisEventBus('redis://127.0.0.1:1', { timeoutMs: 500 });
      await gone.publish('file.deleted', { fileId: 'x' }).catch(() => {});
      await Promise.all([a.close(), b.close(), a.close(), gone.close()]);
      console.log('closed');
    `,
    async close() {
      await Promise.all([a.close(), b.close()]);
      await admin.del(stream, `${stream}:seq`);
      await admin.quit();
    },
  };
}

/** A promise settled by `executor`, or rejected naming `what` after `ms`. */
function within<T>(
  what: string,
  ms: number,
  executor: (resolve: (value: T) => void, reject: (err: Error) => void) => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    executor(resolve, reject);
  }).finally(() => clearTimeout(timer));
}

/** Resolves when `check()` holds; fails naming `what` after `ms`. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Records what a listener of `type` on `bus` receives. */
function record<K extends EventType | '*'>(bus: EventBus, type: K) {
  const events: FilesEvent[] = [];
  const off = bus.on(type, (e) => events.push(e as FilesEvent));
  return {
    events,
    off,
    /** Waits until an event with `fileId` arrived. */
    saw: (fileId: string, what = `event ${fileId}`) =>
      until(what, () => events.some((e) => 'fileId' in e.data && e.data.fileId === fileId)),
  };
}

/**
 * After `on()`: a later command of the bus orders its tail's start before whatever is published next (Redis reads
 * the start point asynchronously; SQLite at once, where this is a cheap query).
 */
const listening = (bus: EventBus) => bus.since(Number.MAX_SAFE_INTEGER, 1);

const deleted = (bus: EventBus, fileId: string) => bus.publish('file.deleted', { fileId });
const completed = (bus: EventBus, fileId: string) =>
  bus.publish('job.completed', { jobId: 1, fileId, kind: 'image', attempts: 1, ms: 5 });

const fileIds = (events: FilesEvent[]) => events.map((e) => ('fileId' in e.data ? e.data.fileId : '?'));

function contract(name: string, make: () => Promise<Pair>, skip: string | false) {
  describe(`EventBus contract: ${name}`, { skip }, () => {
    const withPair = (fn: (p: Pair) => Promise<void>) => async () => {
      const p = await make();
      try {
        await fn(p);
      } finally {
        await p.close();
      }
    };

    it(
      'gives ids that increase strictly, in one order across publishers',
      withPair(async ({ a, b }) => {
        const first = await deleted(a, 'first');
        const sequential: FilesEvent[] = [];
        for (let i = 0; i < 6; i++) sequential.push(await deleted(i % 2 ? b : a, `s${i}`));
        for (let i = 1; i < sequential.length; i++) {
          assert.ok(sequential[i]!.id > sequential[i - 1]!.id, `id ${i} after id ${i - 1}`);
        }
        const concurrent = await Promise.all(
          Array.from({ length: 40 }, (_, i) => deleted(i % 2 ? b : a, `c${i}`)),
        );
        const ids = concurrent.map((e) => e.id);
        assert.equal(new Set(ids).size, ids.length, 'no id given twice');
        const recorded = await a.since(first.id, 1_000);
        assert.equal(recorded.length, 46);
        for (let i = 1; i < recorded.length; i++) assert.ok(recorded[i]!.id > recorded[i - 1]!.id);
        assert.deepEqual(
          recorded.map((e) => e.id),
          [...sequential, ...concurrent].map((e) => e.id).sort((x, y) => x - y),
        );
      }),
    );

    it(
      "delivers every publisher's events exactly once, its own at once, with their fields",
      withPair(async ({ a, b }) => {
        const all = record(a, '*');
        await listening(a);
        const published: FilesEvent[] = [];
        for (let i = 0; i < 5; i++) {
          published.push(await deleted(b, `b${i}`));
          const own = await deleted(a, `a${i}`);
          published.push(own);
          assert.ok(all.events.includes(own), 'its own event is emitted before publish resolves');
        }
        // The tail delivers in id order: once the last event arrived, any duplicate would have come before it.
        const last = await deleted(b, 'last');
        published.push(last);
        await all.saw('last');
        const ids = all.events.map((e) => e.id);
        assert.equal(new Set(ids).size, ids.length, `no duplicates: ${ids.join(' ')}`);
        assert.deepEqual(
          [...all.events].sort((x, y) => x.id - y.id),
          [...published].sort((x, y) => x.id - y.id),
        );
        for (const e of all.events) {
          assert.equal(e.type, 'file.deleted');
          assert.equal(typeof e.pid, 'number');
          assert.ok(Math.abs(Date.now() - e.at) < 60_000);
        }
        all.off();
      }),
    );

    it(
      'filters by type',
      withPair(async ({ a, b }) => {
        const jobs = record(a, 'job.completed');
        const all = record(a, '*');
        await listening(a);
        await deleted(b, 'd1');
        await completed(b, 'j1');
        await completed(a, 'j2');
        await deleted(a, 'd2');
        await deleted(b, 'end');
        await all.saw('end');
        assert.deepEqual(fileIds(jobs.events).sort(), ['j1', 'j2']);
        assert.ok(jobs.events.every((e) => e.type === 'job.completed'));
        assert.deepEqual(fileIds(all.events).sort(), ['d1', 'd2', 'end', 'j1', 'j2']);
        jobs.off();
        all.off();
      }),
    );

    it(
      "returns later events with since(id, limit), oldest first, every publisher's",
      withPair(async ({ a, b }) => {
        const start = await deleted(a, 'start');
        const later: FilesEvent[] = [];
        for (let i = 0; i < 6; i++) later.push(await (i % 2 ? completed(b, `e${i}`) : deleted(a, `e${i}`)));
        assert.deepEqual(await b.since(start.id), later);
        assert.deepEqual(await a.since(start.id, 2), later.slice(0, 2));
        assert.deepEqual(await a.since(later[3]!.id, 10), later.slice(4));
        assert.deepEqual(await b.since(later.at(-1)!.id), []);
        const before = await a.since(start.id - 1, 1);
        assert.deepEqual(before, [start]);
      }),
    );

    it(
      'stops delivering on unsubscribe, and stops its tail with the last listener',
      withPair(async ({ a, b, tailing }) => {
        const one = record(a, '*');
        const two = record(a, 'file.deleted');
        await listening(a);
        if (tailing) await until('the tail to connect', tailing);
        await deleted(b, 'both');
        await two.saw('both');
        await one.saw('both');

        one.off();
        one.off(); // twice is harmless
        await deleted(b, 'only-two');
        await two.saw('only-two');
        assert.deepEqual(fileIds(one.events), ['both']);

        two.off();
        if (tailing) await until('the tail connection to go', async () => !(await tailing()));
        await deleted(b, 'nobody');
        await deleted(a, 'nobody-own');

        // A new listener starts a new tail from the newest event: it gets what comes next, and only that.
        const three = record(a, '*');
        await listening(a);
        await deleted(b, 'three');
        await three.saw('three');
        assert.deepEqual(fileIds(three.events), ['three']);
        assert.deepEqual(fileIds(one.events), ['both']);
        assert.deepEqual(fileIds(two.events), ['both', 'only-two']);
        three.off();
      }),
    );

    it(
      'closes idempotently, after which nothing is delivered, and the process exits by itself',
      withPair(async ({ a, b, script }) => {
        const all = record(a, '*');
        await listening(a);
        await Promise.all([a.close(), a.close()]);
        await a.close();
        all.off(); // after close: harmless
        await deleted(b, 'after-close');
        await b.since(0);
        assert.deepEqual(all.events, []);

        const started = Date.now();
        const { code, stdout, stderr } = await new Promise<{
          code: number | null;
          stdout: string;
          stderr: string;
        }>((resolve) => {
          const child = execFile(
            process.execPath,
            ['--conditions=weft-source', '--input-type=module', '-e', script],
            { timeout: 30_000 },
            (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
          );
        });
        assert.equal(code, 0, `the child exits by itself (after ${Date.now() - started} ms): ${stderr}`);
        assert.equal(stdout.trim(), 'closed');
      }),
    );
  });
}

const skip = await serviceSkip({ redis: REDIS_URL });

contract('SqliteEventBus', sqlitePair, false);
contract('RedisEventBus', redisPair, skip);

/** A TCP proxy in front of Redis that can drop every connection and refuse new ones, then come back. */
async function redisProxy() {
  const target = new URL(REDIS_URL);
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port || 6379), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const { port } = server.address() as { port: number };
  const url = new URL(REDIS_URL);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    async down() {
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
    up: () => listen(port),
  };
}

describe('RedisEventBus', { skip }, () => {
  it('trims the stream to about `keep` events', async () => {
    const p = await redisPair({ keep: 50 });
    try {
      for (let batch = 0; batch < 6; batch++) {
        await Promise.all(
          Array.from({ length: 50 }, (_, i) => deleted(batch % 2 ? p.a : p.b, `t${batch}-${i}`)),
        );
      }
      const length = await p.admin.xlen(p.stream);
      // MAXLEN ~ trims whole stream nodes (100 entries by default): never below keep, never far above.
      assert.ok(length >= 50 && length <= 150, `XLEN ${length} of 300 published, keep 50`);
      const kept = await p.a.since(0, 1_000);
      assert.equal(kept.length, length);
      assert.equal(kept.at(-1)!.id, 300);
      assert.equal(kept[0]!.id, 300 - length + 1, 'the oldest are trimmed');
    } finally {
      await p.close();
    }
  });

  it('fails to open with ERR_WEFT_FILES_REDIS, without the password, when Redis does not answer', async () => {
    const started = Date.now();
    await assert.rejects(
      RedisEventBus.open('redis://user:s3cret@127.0.0.1:1/0', { timeoutMs: 2_000 }),
      (err) => {
        assert.ok(err instanceof Error);
        assert.equal((err as { code?: string }).code, 'ERR_WEFT_FILES_REDIS');
        assert.match(err.message, /^Cannot reach Redis at 127\.0\.0\.1:1 for the event bus: /);
        assert.doesNotMatch(err.message, /s3cret/);
        return true;
      },
    );
    assert.ok(Date.now() - started < 5_000, 'within the timeout');

    const lazy = new RedisEventBus('redis://127.0.0.1:1', { timeoutMs: 2_000 });
    const at = Date.now();
    await assert.rejects(deleted(lazy, 'nowhere'));
    assert.ok(Date.now() - at < 5_000, 'publish rejects rather than waits');
    await lazy.close();
    assert.throws(() => new RedisEventBus('http://127.0.0.1:6379'), { code: 'ERR_WEFT_FILES_CONFIG' });
  });

  it('rejects publishing while Redis is away, and its tail resumes without losing events when it is back', async () => {
    const proxy = await redisProxy();
    const stream = `weft-files-test:${randomUUID()}`;
    const a = await RedisEventBus.open(proxy.url, { stream, blockMs: 300, timeoutMs: 2_000 });
    const b = await RedisEventBus.open(REDIS_URL, { stream });
    const admin = new Redis(REDIS_URL);
    try {
      const all = record(a, '*');
      await listening(a);
      await deleted(b, 'before');
      await all.saw('before');

      await proxy.down();
      const at = Date.now();
      await assert.rejects(deleted(a, 'while-down'));
      assert.ok(Date.now() - at < 5_000, `publish rejected after ${Date.now() - at} ms`);
      for (const id of ['gap1', 'gap2', 'gap3']) await deleted(b, id);

      await proxy.up();
      await all.saw('gap3', 'the events published while away, after reconnecting');
      await deleted(a, 'after');
      await all.saw('after');
      assert.deepEqual(fileIds(all.events), ['before', 'gap1', 'gap2', 'gap3', 'after']);
      assert.ok(a.lastError, 'the connection error was kept, not thrown');
    } finally {
      await Promise.all([a.close(), b.close()]);
      await proxy.down();
      await admin.del(stream, `${stream}:seq`);
      await admin.quit();
    }
  });

  it('rejects publish and since after close', async () => {
    const p = await redisPair();
    await p.close();
    await assert.rejects(deleted(p.a, 'closed'), /closed/);
    await assert.rejects(p.b.since(0), /closed/);
  });
});
