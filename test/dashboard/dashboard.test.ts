import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { SnapshotFeed } from '../../src/dashboard/feed.ts';
import {
  type ClusterInput,
  clusterView,
  createDashboard,
  type Dashboard,
  type DashboardOptions,
  type DashboardSnapshot,
  processView,
} from '../../src/dashboard/index.ts';
import { createLifecycle } from '../../src/lifecycle/index.ts';
import { invalidOption, within } from '../helpers.ts';
import { openStream } from './helpers.ts';

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.closeAllConnections();
  for (const s of servers) s.close();
});

/** A node:http server that answers the dashboard's paths and 404 otherwise. */
async function serve(options: Partial<DashboardOptions> = {}) {
  const calls: number[] = [];
  const dashboard = createDashboard({
    snapshot: () => {
      calls.push(performance.now());
      return { ...processView('test'), title: `snapshot ${calls.length}` };
    },
    ...options,
  });
  const server = createServer((req, res) => {
    if (!dashboard.handle(req, res)) res.writeHead(404).end();
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { dashboard, server, url, calls };
}

const fetchWithin = (url: string, init: RequestInit = {}) =>
  fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });

describe('weftjs/dashboard', () => {
  it('serves the page and its assets from the process, with ETag, 304, gzip and a strict CSP', async () => {
    const { dashboard, url } = await serve();
    const page = await fetchWithin(`${url}/`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    const csp = page.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|https?:/, 'no inline script or style, no other origin');
    const html = await page.text();
    for (const asset of html.matchAll(/(?:src|href)="(\/[^"]+)"/g)) {
      const res = await fetchWithin(`${url}${asset[1]}`);
      assert.equal(res.status, 200, `${asset[1]} is served`);
      await res.arrayBuffer();
    }
    assert.doesNotMatch(html, /(?:src|href)="(?:https?:)?\/\//, 'every asset comes from this server');
    assert.match(html, /<main id="main">/);

    const etag = page.headers.get('etag')!;
    const again = await fetchWithin(`${url}/`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    const js = await new Promise<{ encoding?: string; body: Buffer }>((resolve, reject) => {
      // fetch would decompress on its own: read the bytes as sent.
      import('node:http').then(({ get }) =>
        get(`${url}/dashboard/dashboard.js`, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }),
          );
        }).on('error', reject),
      );
    });
    assert.equal(js.encoding, 'gzip');
    assert.match(gunzipSync(js.body).toString(), /new EventSource\('\/dashboard\/events'\)/);

    assert.equal((await fetchWithin(`${url}/other`)).status, 404, 'other paths are left to the server');
    assert.equal((await fetchWithin(`${url}/`, { method: 'POST' })).status, 405);
    await dashboard.close();
  });

  it('streams one snapshot a second, made once per tick and shared by every open page', async () => {
    const { dashboard, url, calls } = await serve();
    const [a, b] = await Promise.all([
      openStream(`${url}/dashboard/events`),
      openStream(`${url}/dashboard/events`),
    ]);
    assert.equal(a.res.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(a.res.headers.connection, 'close', 'a stream is the last response on its connection');
    const [ea, eb] = await Promise.all([
      a.received(3, 10_000, 'three snapshots on the first stream'),
      b.received(3, 10_000, 'three snapshots on the second stream'),
    ]);
    assert.deepEqual(a.retry, [1000], 'the reconnection delay comes first');
    assert.ok(ea.every((e) => e.event === 'snapshot'));
    const titles = (es: typeof ea) => es.map((e) => (JSON.parse(e.data) as DashboardSnapshot).title);
    // Both streams saw the same snapshots: one computation per tick, whatever the number of pages.
    assert.deepEqual(titles(ea).slice(-2), titles(eb).slice(-2));
    assert.ok(calls.length <= 4, `${calls.length} snapshots for 3 ticks and 2 streams`);
    for (let i = 1; i < calls.length; i++) {
      assert.ok(
        calls[i]! - calls[i - 1]! >= 990,
        `snapshots ${Math.round(calls[i]! - calls[i - 1]!)} ms apart`,
      );
    }
    assert.equal(dashboard.clients, 2);
    a.close();
    b.close();
    await dashboard.close();
  });

  it('makes no snapshot while no page is open: the timer starts with the first stream, stops with the last', async () => {
    let made = 0;
    const idle: string[] = [];
    const feed = new SnapshotFeed({
      snapshot: () => ++made,
      intervalMs: 1_000,
      heartbeatMs: 15_000,
      retryMs: 1_000,
      onActive: () => idle.push('active'),
      onIdle: () => idle.push('idle'),
    });
    const server = createServer((req, res) => feed.attach(req, res));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    assert.equal(feed.running, false);
    assert.equal(made, 0, 'nothing is made before a page opens');
    const s = await openStream(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await s.received(1, 5_000, 'the first snapshot');
    assert.equal(feed.running, true);
    s.close();
    await within(
      new Promise<void>((resolve) => {
        const poll = () => (idle.includes('idle') ? resolve() : setTimeout(poll, 5));
        poll();
      }),
      5_000,
      'the feed to go idle',
    );
    assert.equal(feed.running, false, 'the last stream closed: the timer stopped');
    assert.deepEqual(idle, ['active', 'idle']);
    await feed.close();
  });

  it('a failing snapshot is reported to the page as a problem event, and the stream stays open', async () => {
    let fail = true;
    const { dashboard, url } = await serve({
      snapshot: () => {
        if (fail) throw new Error('database is locked');
        return processView('ok');
      },
    });
    const s = await openStream(`${url}/dashboard/events`);
    const [first] = await s.received(1, 5_000, 'the problem event');
    assert.deepEqual(first, { event: 'problem', data: JSON.stringify({ message: 'database is locked' }) });
    const json = await fetchWithin(`${url}/dashboard/snapshot.json`);
    assert.equal(json.status, 500);
    fail = false;
    const [, second] = await s.received(2, 5_000, 'a snapshot once it works again');
    assert.equal(second!.event, 'snapshot');
    s.close();
    await dashboard.close();
  });

  it('close() ends open streams, refuses new ones, and a lifecycle drain does not wait on them', async () => {
    const { dashboard, server, url } = await serve();
    const life = createLifecycle({ exit: false, signals: [], shutdownTimeout: 10_000, handleErrors: false });
    life.addServer(server);
    life.onShutdown('dashboard', () => dashboard.close(), { phase: 'listeners' });
    const s = await openStream(`${url}/dashboard/events`);
    await s.received(1, 5_000, 'a snapshot');
    const started = performance.now();
    const code = await within(life.shutdown('test'), 8_000, 'the drain with an open stream');
    assert.equal(code, 0, 'a clean drain, not the deadline');
    assert.ok(performance.now() - started < 5_000, 'the stream did not hold the drain');
    await within(s.ended, 2_000, 'the stream to end');

    const other = await serveClosed(dashboard);
    assert.equal(other.status, 503, 'a closed dashboard refuses new streams');
  });

  it('view: each viewer sees its part of the one snapshot, on its stream and in snapshot.json; a failing view shows nothing', async () => {
    const { dashboard, url, calls } = await serve({
      view: (snap, req) => {
        const who = req.headers['x-viewer'];
        if (who === 'broken') throw new Error('no such viewer');
        return { ...snap, title: `${snap.title} for ${who ?? 'nobody'}` };
      },
    });
    const [a, b, c] = await Promise.all(
      ['alice', 'bob', 'broken'].map((who) => openStream(`${url}/dashboard/events`, { 'x-viewer': who })),
    );
    const [ea] = await a!.received(2, 10_000, 'snapshots for alice');
    const [eb] = await b!.received(2, 10_000, 'snapshots for bob');
    const [ec] = await c!.received(1, 10_000, 'what the broken view gets');
    const title = (e: { data: string }) => (JSON.parse(e.data) as DashboardSnapshot).title;
    assert.match(title(ea!), /^snapshot \d+ for alice$/);
    assert.match(title(eb!), /^snapshot \d+ for bob$/);
    assert.deepEqual(ec, { event: 'problem', data: JSON.stringify({ message: 'no such viewer' }) });
    assert.ok(calls.length <= 3, `one snapshot per tick for three viewers (${calls.length})`);
    const json = await fetchWithin(`${url}/dashboard/snapshot.json`, { headers: { 'x-viewer': 'carol' } });
    assert.match(((await json.json()) as DashboardSnapshot).title, / for carol$/);
    const broken = await fetchWithin(`${url}/dashboard/snapshot.json`, { headers: { 'x-viewer': 'broken' } });
    assert.equal(broken.status, 500);
    assert.deepEqual(await broken.json(), { message: 'no such viewer' });
    for (const s of [a, b, c]) s!.close();
    await dashboard.close();
  });

  it('validates its options', () => {
    const snapshot = () => processView('x');
    assert.throws(() => createDashboard({ snapshot, intervalMs: 500 }), invalidOption('intervalMs'));
    assert.throws(() => createDashboard({} as DashboardOptions), invalidOption('snapshot'));
    assert.throws(() => createDashboard({ snapshot, onIdle: 1 as never }), invalidOption('onIdle'));
    assert.throws(() => createDashboard({ snapshot, view: {} as never }), invalidOption('view'));
  });
});

/** Asks a closed dashboard for a stream on a fresh server. */
async function serveClosed(dashboard: Dashboard): Promise<{ status: number }> {
  const server = createServer((req, res) => dashboard.handle(req, res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const res = await fetchWithin(
    `http://127.0.0.1:${(server.address() as AddressInfo).port}/dashboard/events`,
  );
  await res.arrayBuffer();
  return { status: res.status };
}

describe('dashboard views', () => {
  const metrics = (pid: number) => ({
    time: 1,
    pid,
    process: {
      uptimeMs: 5_000,
      eventLoop: {
        delayP50: 1,
        delayP99: 4.5,
        delayMax: 9,
        delayMean: 1,
        utilization: 0.25,
        intervalMs: 1000,
      },
      memory: { rss: 100, heapUsed: 50, heapTotal: 60, external: 1, arrayBuffers: 1 },
      cpu: { userMs: 30, systemMs: 12 },
      gc: {},
      activeResources: {},
    },
    pools: {
      images: {
        threads: { total: 2, idle: 1, busy: 1 },
        queued: 3,
        running: 1,
        completed: 10,
        failed: 1,
        cancelled: 0,
        timedOut: 2,
        crashed: 1,
        utilization: 0.5,
        waitTime: { count: 10, mean: 1, p50: 1, p90: 2, p99: 7, max: 8 },
        runTime: { count: 10, mean: 1, p50: 1, p90: 2, p99: 20, max: 30 },
      },
    },
    lifecycles: {},
    shedders: {},
    meters: {},
    collectErrors: 0,
  });

  it('clusterView: a row per slot with its numbers, every pool of every worker, the reload step by step', () => {
    const input: ClusterInput = {
      time: 42,
      supervisor: {
        name: 'files',
        pid: 1,
        state: 'reloading',
        uptimeMs: 9,
        lastReload: undefined,
        reload: { startedAt: '2026-01-01T00:00:00.000Z', total: 2, replaced: 1 },
      },
      slots: [
        { index: 0, pid: 10, state: 'ready', restarts: 0, uptimeMs: 5, metrics: metrics(10) },
        {
          index: 1,
          pid: 12,
          state: 'ready',
          restarts: 2,
          uptimeMs: 1,
          lastExit: 'signal SIGKILL',
          replacement: { why: 'reload', step: 'starting', pid: 13, oldPid: 12 },
          error: 'worker 1 did not answer "weft:metrics" within 1000 ms',
        },
      ],
    };
    const v = clusterView(input);
    assert.equal(v.scope, 'cluster');
    assert.equal(v.title, 'files');
    assert.deepEqual(v.cluster?.reload, input.supervisor.reload);
    assert.deepEqual(v.slots[0], {
      index: 0,
      pid: 10,
      state: 'ready',
      uptimeMs: 5,
      restarts: 0,
      rss: 100,
      heapUsed: 50,
      loopP99: 4.5,
      elu: 0.25,
      cpuMs: 42,
    });
    assert.equal(v.slots[1]!.lastExit, 'signal SIGKILL');
    assert.deepEqual(v.slots[1]!.replacement, { why: 'reload', step: 'starting', pid: 13, oldPid: 12 });
    assert.match(v.slots[1]!.error ?? '', /did not answer/);
    assert.deepEqual(v.pools, [
      {
        slot: 0,
        pid: 10,
        name: 'images',
        busy: 1,
        idle: 1,
        queued: 3,
        running: 1,
        completed: 10,
        failed: 1,
        timedOut: 2,
        crashed: 1,
        waitP99: 7,
        runP99: 20,
      },
    ]);
  });

  it('processView: this process alone, from its metrics or from process.memoryUsage()', () => {
    const bare = processView('solo');
    assert.equal(bare.scope, 'process');
    assert.equal(bare.slots.length, 1);
    assert.equal(bare.slots[0]!.pid, process.pid);
    assert.ok((bare.slots[0]!.rss ?? 0) > 0 && (bare.slots[0]!.cpuMs ?? 0) > 0);
    assert.deepEqual(bare.pools, []);
    const withMetrics = processView('solo', metrics(process.pid));
    assert.equal(withMetrics.slots[0]!.loopP99, 4.5);
    assert.equal(withMetrics.pools[0]!.name, 'images');
  });
});
