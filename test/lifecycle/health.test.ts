import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { InvalidOptionError } from '../../src/errors.ts';
import { type CheckKind, Health, type HealthReport, type ProbeServer } from '../../src/lifecycle/health.ts';
import type { FastifyLikeReply } from '../../src/lifecycle/reply.ts';
import { rejection, within } from '../helpers.ts';

const KINDS: readonly CheckKind[] = ['liveness', 'readiness', 'startup'];

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  const pending = closers.splice(0).map((close) => close());
  await within(Promise.all(pending), 5_000, 'servers to close after the test');
});

/** A node:http server on 127.0.0.1 running `listener`, closed after the test. */
async function serve(listener: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(listener);
  server.listen(0, '127.0.0.1');
  await within(once(server, 'listening'), 5_000, 'listening');
  closers.push(() => closeServer(server));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function probe(health: Health, options?: Parameters<Health['probeServer']>[0]): Promise<ProbeServer> {
  const server = await within(health.probeServer(options), 5_000, 'the probe server');
  closers.push(() => server.close());
  return server;
}

/** GET (or another method) bounded in time; the body parsed as JSON when there is one. */
async function request(url: string, method = 'GET') {
  const res = await within(fetch(url, { method }), 5_000, `${method} ${url}`);
  const text = await within(res.text(), 5_000, 'the body');
  const json = text !== '' && res.headers.get('content-type')?.startsWith('application/json');
  return {
    status: res.status,
    headers: res.headers,
    text,
    body: json ? (JSON.parse(text) as HealthReport) : null,
  };
}

function deferred<T = void>() {
  return Promise.withResolvers<T>();
}

/** A clock the test moves by hand. */
function manualClock(start = 0) {
  const clock = { now: start, read: () => clock.now };
  return clock;
}

async function statuses(health: Health): Promise<Record<CheckKind, string>> {
  const [liveness, readiness, startup] = await Promise.all(KINDS.map((k) => health.report(k)));
  return { liveness: liveness!.status, readiness: readiness!.status, startup: startup!.status };
}

describe('health states', () => {
  it('answers each kind in each state, with no checks', async () => {
    const health = new Health();
    assert.equal(health.state, 'starting');
    assert.deepEqual(await statuses(health), { liveness: 'ok', readiness: 'fail', startup: 'fail' });
    health.markStarted();
    assert.equal(health.state, 'ready');
    assert.deepEqual(await statuses(health), { liveness: 'ok', readiness: 'ok', startup: 'ok' });
    health.markShuttingDown();
    health.markShuttingDown();
    health.markStarted(); // does not undo the shutdown
    assert.equal(health.state, 'shutting-down');
    assert.deepEqual(await statuses(health), { liveness: 'ok', readiness: 'fail', startup: 'ok' });
    const report = await health.report('readiness');
    assert.deepEqual(report, { kind: 'readiness', status: 'fail', state: 'shutting-down', checks: {} });
  });

  it('a failing check fails only its own kind', async () => {
    for (const kind of KINDS) {
      const health = new Health();
      health.markStarted();
      health.addCheck('broken', () => false, { kind });
      const expected = { liveness: 'ok', readiness: 'ok', startup: 'ok', [kind]: 'fail' };
      assert.deepEqual(await statuses(health), expected, kind);
    }
  });

  it('a failing startup check keeps startup red after markStarted; liveness ignores shutdown', async () => {
    const health = new Health();
    let up = false;
    health.addCheck('migrations', () => up, { kind: 'startup', cacheFor: 0 });
    health.addCheck('loop', () => true, { kind: 'liveness' });
    health.markStarted();
    assert.equal((await health.report('startup')).status, 'fail');
    up = true;
    assert.equal((await health.report('startup')).status, 'ok');
    health.markShuttingDown();
    const live = await health.report('liveness');
    assert.equal(live.status, 'ok');
    assert.equal(live.checks.loop?.status, 'ok');
  });

  it('once shutting down, readiness fails at once without running its checks, showing the last results', async () => {
    const health = new Health({ defaults: { cacheFor: 0 } });
    let calls = 0;
    health.addCheck('db', () => {
      calls++;
    });
    health.addCheck('never-run', () => {
      calls++;
    });
    health.markStarted();
    await health.report('readiness');
    health.removeCheck('never-run');
    health.addCheck('never-run', () => new Promise(() => {}), { timeout: 0 });
    health.markShuttingDown();
    const report = await within(health.report('readiness'), 1_000, 'readiness while shutting down');
    assert.equal(calls, 2);
    assert.equal(report.status, 'fail');
    assert.deepEqual(Object.keys(report.checks), ['db']);
    assert.equal(report.checks.db?.status, 'ok');
    assert.equal(report.checks.db?.cached, true);
  });

  it('a shutdown that starts while readiness checks run makes that report fail', async () => {
    const health = new Health();
    const gate = deferred();
    health.addCheck('slow', () => gate.promise);
    health.markStarted();
    const pending = health.report('readiness');
    health.markShuttingDown();
    gate.resolve();
    const report = await within(pending, 1_000, 'the report');
    assert.equal(report.checks.slow?.status, 'ok');
    assert.equal(report.status, 'fail');
    assert.equal(report.state, 'shutting-down');
  });
});

describe('health checks', () => {
  it('caches each result for cacheFor ms of the injected clock, failures too', async () => {
    const clock = manualClock(Date.UTC(2030, 0, 1));
    const health = new Health({ clock: clock.read });
    health.markStarted();
    let calls = 0;
    health.addCheck('db', () => {
      calls++;
      clock.now += 25;
      return calls > 1 ? Promise.reject(new Error('db down')) : Promise.resolve();
    });
    const first = await health.report('readiness');
    assert.deepEqual(first.checks.db, {
      status: 'ok',
      durationMs: 25,
      cached: false,
      checkedAt: '2030-01-01T00:00:00.000Z',
    });
    clock.now += 999;
    const second = await health.report('readiness');
    assert.equal(calls, 1);
    assert.deepEqual(second.checks.db, { ...first.checks.db, cached: true });
    clock.now += 1;
    const third = await health.report('readiness');
    assert.equal(calls, 2);
    assert.equal(third.status, 'fail');
    assert.deepEqual(third.checks.db, {
      status: 'fail',
      durationMs: 25,
      cached: false,
      error: 'db down',
      checkedAt: '2030-01-01T00:00:01.025Z',
    });
    clock.now += 500;
    assert.equal((await health.report('readiness')).checks.db?.cached, true);
    assert.equal(calls, 2);
  });

  it('honours cacheFor per check and from defaults; 0 never caches', async () => {
    const clock = manualClock();
    const health = new Health({ clock: clock.read, defaults: { cacheFor: 100 } });
    const calls = { a: 0, b: 0, c: 0 };
    health.addCheck('a', () => void calls.a++, { kind: 'liveness' });
    health.addCheck('b', () => void calls.b++, { kind: 'liveness', cacheFor: 0 });
    health.addCheck('c', () => void calls.c++, { kind: 'liveness', cacheFor: Number.POSITIVE_INFINITY });
    for (let i = 0; i < 3; i++) await health.report('liveness');
    assert.deepEqual(calls, { a: 1, b: 3, c: 1 });
    clock.now = 100;
    await health.report('liveness');
    assert.deepEqual(calls, { a: 2, b: 4, c: 1 });
  });

  it('concurrent probes share one run (single flight)', async () => {
    const health = new Health({ defaults: { cacheFor: 0 } });
    health.markStarted();
    let calls = 0;
    const gate = deferred();
    health.addCheck('db', () => {
      calls++;
      return gate.promise;
    });
    const reports = Array.from({ length: 5 }, () => health.report('readiness'));
    const handler = health.handler('readiness');
    const arrived = deferred();
    const url = await serve((req, res) => {
      void handler(req, res); // joins the run in flight synchronously
      arrived.resolve();
    });
    const viaHttp = request(url);
    await within(arrived.promise, 5_000, 'the HTTP probe');
    gate.resolve();
    const results = await within(Promise.all(reports), 1_000, 'the reports');
    assert.equal((await viaHttp).status, 200);
    assert.equal(calls, 1);
    for (const r of results) assert.equal(r.checks.db?.status, 'ok');
    await health.report('readiness'); // cacheFor 0: a new run once the last one ended
    assert.equal(calls, 2);
  });

  it('a check that never settles times out within its timeout, and its signal is aborted', async () => {
    const health = new Health();
    health.markStarted();
    let seen: AbortSignal | undefined;
    health.addCheck(
      'hang',
      (signal) => {
        seen = signal;
        return new Promise(() => {});
      },
      { timeout: 30 },
    );
    const start = performance.now();
    const report = await within(health.report('readiness'), 2_000, 'the timeout');
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 25 && elapsed < 1_500, `took ${elapsed} ms`);
    assert.equal(report.status, 'fail');
    assert.equal(report.checks.hang?.status, 'timeout');
    assert.equal(report.checks.hang?.error, 'timed out after 30 ms');
    assert.ok(seen?.aborted);
    assert.equal((seen.reason as DOMException).name, 'TimeoutError');
  });

  it('a check that rejects after its timeout causes no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const health = new Health();
      const late = deferred();
      health.addCheck(
        'late',
        (signal) =>
          new Promise((_, reject) => {
            signal.addEventListener('abort', () =>
              setTimeout(() => {
                reject(new Error('too late'));
                late.resolve();
              }, 5),
            );
          }),
        { kind: 'liveness', timeout: 10 },
      );
      health.addCheck(
        'late-non-error',
        () => new Promise((_, reject) => setTimeout(reject, 40, 'late string')),
        { kind: 'liveness', timeout: 10 },
      );
      const report = await within(health.report('liveness'), 2_000, 'the report');
      assert.equal(report.checks.late?.status, 'timeout');
      assert.equal(report.checks['late-non-error']?.status, 'timeout');
      await within(late.promise, 2_000, 'the late rejection');
      await new Promise((r) => setTimeout(r, 50)); // bounded: past both late rejections
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('throwing, rejecting or returning false fails; any other value is ok; errors become strings', async () => {
    const health = new Health();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const throws = (value: unknown) => () => {
      throw value;
    };
    const hostile = {
      toJSON() {
        throw new Error('x');
      },
    };
    const unshowable = Object.assign(Object.create(null), { toJSON: () => 1n });
    const cases: [string, () => unknown, string | undefined][] = [
      ['throws', throws(new TypeError('bad')), 'bad'],
      ['rejects', () => Promise.reject(new Error('nope')), 'nope'],
      ['empty-message', throws(new RangeError('')), 'RangeError'],
      ['false', () => false, 'the check returned false'],
      ['async-false', async () => false, 'the check returned false'],
      ['string', throws('plain string'), 'plain string'],
      ['number', () => Promise.reject(42), '42'],
      ['object', throws({ code: 'E_DOWN' }), '{"code":"E_DOWN"}'],
      ['null', throws(null), 'null'],
      ['undefined', () => Promise.reject(undefined), 'undefined'],
      ['symbol', throws(Symbol('sym')), 'Symbol(sym)'],
      ['cyclic', throws(cyclic), '[object Object]'],
      ['bigint', throws(10n), '10'],
      ['null-proto', throws(Object.create(null)), '{}'],
      ['hostile', throws(hostile), '[object Object]'],
      ['unshowable', throws(unshowable), 'a value that cannot be shown was thrown'],
      ['true', () => true, undefined],
      ['undefined-ok', () => undefined, undefined],
      ['zero', () => 0, undefined],
      // biome-ignore lint/suspicious/noThenProperty: a non-promise thenable is what this case checks
      ['thenable', () => ({ then: (ok: (v: unknown) => void) => ok('yes') }), undefined],
    ];
    for (const [name, fn] of cases) health.addCheck(name, fn, { kind: 'liveness' });
    const { checks, status } = await health.report('liveness');
    assert.equal(status, 'fail');
    for (const [name, , error] of cases) {
      const result = checks[name];
      assert.equal(result?.status, error === undefined ? 'ok' : 'fail', name);
      assert.equal(result?.error, error, name);
      assert.equal(typeof result?.checkedAt, 'string');
    }
  });

  it('a failing non-critical check is reported but does not fail the probe: degraded names it', async () => {
    const health = new Health({ defaults: { cacheFor: 0 } });
    let queueUp = false;
    let dbUp = true;
    health.addCheck('db', () => dbUp);
    health.addCheck('queue', () => queueUp, { critical: false });
    health.markStarted();
    const degraded = await health.report('readiness');
    assert.equal(degraded.status, 'ok');
    assert.deepEqual(degraded.degraded, ['queue']);
    assert.equal(degraded.checks.queue?.status, 'fail');
    assert.equal(degraded.checks.queue?.critical, false);
    assert.equal('critical' in (degraded.checks.db ?? {}), false, 'critical checks are not marked');
    const url = (await probe(health)).port;
    const res = await request(`http://127.0.0.1:${url}/health/ready`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body?.degraded, ['queue']);
    // A critical check failing still fails it; the degraded one is still named.
    dbUp = false;
    const both = await health.report('readiness');
    assert.equal(both.status, 'fail');
    assert.deepEqual(both.degraded, ['queue']);
    // Everything up: no `degraded` at all, the report as before.
    dbUp = true;
    queueUp = true;
    const ok = await health.report('readiness');
    assert.equal(ok.status, 'ok');
    assert.equal('degraded' in ok, false);
    // Shutting down fails readiness whatever the checks say.
    health.markShuttingDown();
    assert.equal((await health.report('readiness')).status, 'fail');
  });

  it('validates its arguments with InvalidOptionError', async () => {
    const bad = (fn: () => unknown, option: string) =>
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof InvalidOptionError);
        assert.equal(err.code, 'ERR_WEFT_INVALID_OPTION');
        assert.equal(err.option, option);
        return true;
      });
    const loose = Health as unknown as new (options?: unknown) => Health;
    bad(() => new loose(null), 'options');
    bad(() => new loose({ clock: 5 }), 'clock');
    bad(() => new loose({ defaults: 'x' }), 'defaults');
    bad(() => new loose({ defaults: { timeout: -1 } }), 'defaults.timeout');
    bad(() => new loose({ defaults: { cacheFor: Number.NaN } }), 'defaults.cacheFor');
    const health = new Health();
    const add = health.addCheck.bind(health) as (...args: unknown[]) => Health;
    health.addCheck('db', () => true);
    bad(() => add('', () => true), 'name');
    bad(() => add(7, () => true), 'name');
    bad(() => add('db', () => true), 'name');
    bad(() => add('x', 'not a function'), 'fn');
    bad(() => add('x', () => true, null), 'options');
    bad(() => add('x', () => true, { kind: 'health' }), 'kind');
    bad(() => add('x', () => true, { timeout: '5' }), 'timeout');
    bad(() => add('x', () => true, { timeout: 2 ** 31 }), 'timeout');
    bad(() => add('x', () => true, { cacheFor: -5 }), 'cacheFor');
    bad(() => add('x', () => true, { critical: 'no' }), 'critical');
    bad(() => health.handler('nope' as CheckKind), 'kind');
    const err = await rejection(health.report('nope' as CheckKind), 1_000);
    assert.ok(err instanceof InvalidOptionError && err.option === 'kind');
    const probes = health.probeServer.bind(health) as (options?: unknown) => Promise<ProbeServer>;
    for (const [options, option] of [
      [null, 'options'],
      [{ port: -1 }, 'port'],
      [{ port: 65_536 }, 'port'],
      [{ port: 1.5 }, 'port'],
      [{ host: '' }, 'host'],
      [{ paths: 'x' }, 'paths'],
      [{ paths: { ready: '/r' } }, 'paths'],
      [{ paths: { readiness: 'ready' } }, 'paths.readiness'],
      [{ paths: { readiness: '/health/live' } }, 'paths.readiness'],
    ] as const) {
      const e = await rejection(probes(options), 1_000);
      assert.ok(e instanceof InvalidOptionError, String(option));
      assert.equal(e.option, option);
    }
    assert.equal(health.removeCheck('db'), true);
    assert.equal(health.removeCheck('db'), false);
    health.addCheck('db', () => true); // the name is free again
  });
});

describe('health handlers', () => {
  it('serves node:http with status, JSON body, headers, and HEAD without a body', async () => {
    const health = new Health({ clock: () => 0 }); // same body on each run: HEAD's length can be compared
    health.addCheck('db', () => true, { cacheFor: 0 });
    const url = await serve(health.handler('readiness'));
    const starting = await request(url);
    assert.equal(starting.status, 503);
    assert.equal(starting.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(starting.headers.get('cache-control'), 'no-store');
    assert.equal(starting.body?.state, 'starting');
    assert.equal(starting.body?.checks.db?.status, 'ok');
    health.markStarted();
    const ready = await request(url);
    assert.equal(ready.status, 200);
    assert.deepEqual(Object.keys(ready.body ?? {}), ['kind', 'status', 'state', 'checks']);
    const head = await request(url, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(ready.text)));
    assert.equal(head.headers.get('cache-control'), 'no-store');
    health.markShuttingDown();
    assert.equal((await request(url)).status, 503);
  });

  it('works as an express (req, res, next) handler; next only gets unexpected errors', async () => {
    let fail = false;
    const health = new Health({
      clock: () => {
        if (fail) throw new Error('clock broke');
        return 0;
      },
      defaults: { cacheFor: 0 },
    });
    health.addCheck('db', () => true, { kind: 'liveness' });
    const handler = health.handler('liveness');
    const nexts: unknown[] = [];
    const url = await serve((req, res) => {
      void handler(req, res, (err?: unknown) => {
        nexts.push(err);
        res.writeHead(500).end('from next');
      });
    });
    const ok = await request(url);
    assert.equal(ok.status, 200);
    assert.equal(ok.body?.status, 'ok');
    assert.equal(nexts.length, 0);
    fail = true;
    const broken = await request(url);
    assert.equal(broken.status, 500);
    assert.equal(broken.text, 'from next');
    assert.equal((nexts[0] as Error).message, 'clock broke');
    // Without next (plain node:http), the same failure is a bare 500, never an unhandled rejection.
    const plain = await serve(health.handler('liveness'));
    assert.equal((await request(plain)).status, 500);
  });

  it('works as a fastify handler: code, headers and send on the reply, which it returns', async () => {
    const health = new Health();
    health.addCheck('db', () => true, { kind: 'startup' });
    const handler = health.handler('startup');
    const calls: unknown[][] = [];
    const fake = {
      raw: {} as ServerResponse,
      code(status: number) {
        calls.push(['code', status]);
        return this;
      },
      header(name: string, value: string) {
        calls.push(['header', name, value]);
        return this;
      },
      send(payload?: unknown) {
        calls.push(['send', payload]);
        return this;
      },
      sent: false,
    };
    const returned = await within(handler({ method: 'GET' }, fake), 1_000, 'the fastify handler');
    assert.equal(returned, fake);
    assert.deepEqual(calls.slice(0, 3), [
      ['code', 503],
      ['header', 'content-type', 'application/json; charset=utf-8'],
      ['header', 'cache-control', 'no-store'],
    ]);
    const sent = calls[3] as [string, string];
    assert.equal(sent[0], 'send');
    assert.deepEqual(JSON.parse(sent[1]), {
      kind: 'startup',
      status: 'fail',
      state: 'starting',
      checks: { db: JSON.parse(sent[1]).checks.db },
    });

    // Over a real socket, with a reply that wraps the ServerResponse as fastify's does.
    health.markStarted();
    const url = await serve((req, res) => {
      const reply: FastifyLikeReply = {
        raw: res,
        code(status) {
          res.statusCode = status;
          return reply;
        },
        header: (name, value) => res.setHeader(name, value),
        send: (payload) => res.end(payload),
      };
      void handler(req, reply);
    });
    const got = await request(url);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(got.body?.kind, 'startup');
  });
});

describe('probe server', () => {
  it('serves the three default paths on its own port, 404 elsewhere, 405 for other methods, HEAD', async () => {
    const health = new Health();
    const server = await probe(health);
    assert.ok(server.port > 0);
    const base = `http://127.0.0.1:${server.port}`;
    const expected = { '/health/live': 200, '/health/ready': 503, '/health/startup': 503 };
    for (const [path, status] of Object.entries(expected)) {
      assert.equal((await request(base + path)).status, status, path);
    }
    health.markStarted();
    assert.equal((await request(`${base}/health/ready?verbose=1`)).status, 200);
    const missing = await request(`${base}/health`);
    assert.equal(missing.status, 404);
    const post = await request(`${base}/health/live`, 'POST');
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    const head = await request(`${base}/health/startup`, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
  });

  it('takes custom paths and host, and rejects a port in use', async () => {
    const health = new Health();
    const server = await probe(health, {
      host: '127.0.0.1',
      paths: { liveness: '/livez', readiness: '/readyz' },
    });
    const base = `http://127.0.0.1:${server.port}`;
    assert.equal((await request(`${base}/livez`)).body?.kind, 'liveness');
    assert.equal((await request(`${base}/readyz`)).body?.kind, 'readiness');
    assert.equal((await request(`${base}/health/startup`)).body?.kind, 'startup');
    assert.equal((await request(`${base}/health/live`)).status, 404);
    const err = (await rejection(health.probeServer({ port: server.port }), 5_000)) as NodeJS.ErrnoException;
    assert.equal(err.code, 'EADDRINUSE');
  });

  it('close() is idempotent and closes idle and active connections', async () => {
    const health = new Health();
    const entered = deferred();
    health.addCheck(
      'hang',
      () => {
        entered.resolve();
        return new Promise(() => {});
      },
      { timeout: 0 },
    );
    const server = await probe(health);
    const base = `http://127.0.0.1:${server.port}`;
    assert.equal((await request(`${base}/health/live`)).status, 200); // leaves an idle keep-alive socket
    const active = fetch(`${base}/health/ready`).then(
      () => 'answered',
      () => 'cut',
    );
    await within(entered.promise, 5_000, 'the hung check to start');
    const closing = server.close();
    assert.equal(server.close(), closing);
    await within(closing, 2_000, 'close() with an active probe');
    assert.equal(await within(active, 2_000, 'the cut request'), 'cut');
    assert.equal(server.server.listening, false);
    const connections = await new Promise<number>((resolve, reject) =>
      server.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    );
    assert.equal(connections, 0);
    await server[Symbol.asyncDispose]();
  });

  it('health.close() closes every probe server it started', async () => {
    const health = new Health();
    const a = await probe(health);
    const b = await probe(health);
    await within(health.close(), 2_000, 'health.close()');
    assert.equal(a.server.listening, false);
    assert.equal(b.server.listening, false);
    await health.close();
  });
});
