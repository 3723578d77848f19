import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, afterEach, describe, it } from 'node:test';
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';
import {
  type LoadSample,
  LoadShedder,
  type LoadShedderOptions,
  type ShedReply,
  type ShedResponse,
} from '../../src/lifecycle/shed.ts';
import { invalidOption, nextEvent, within } from '../helpers.ts';

const IDLE: LoadSample = { eventLoopDelayP99: 5, eventLoopUtilization: 0.1, heapUsedRatio: 0.2, gauges: {} };

/** A scripted load: the injected sampler returns `current`, which each test sets. */
class Load {
  current: LoadSample = { ...IDLE };
  calls = 0;
  readonly sampler = (): LoadSample => {
    this.calls++;
    return { ...this.current, gauges: { ...this.current.gauges } };
  };
  set(values: Partial<LoadSample>): this {
    this.current = { ...this.current, ...values };
    return this;
  }
}

const open = new Set<LoadShedder>();
afterEach(() => {
  for (const shedder of open) shedder.close();
  open.clear();
});

/** A shedder sampled by hand (no timer) from a scripted load, closed after the test. */
function make(options: LoadShedderOptions = {}): { shedder: LoadShedder; load: Load } {
  const load = new Load();
  const shedder = track(new LoadShedder({ timer: false, sampler: load.sampler, ...options }));
  return { shedder, load };
}

function track(shedder: LoadShedder): LoadShedder {
  open.add(shedder);
  return shedder;
}

/** Every transition, in order. */
function transitions(shedder: LoadShedder): string[] {
  const seen: string[] = [];
  shedder.on('overload', (reasons) => seen.push(`overload: ${reasons.join(', ')}`));
  shedder.on('recover', () => seen.push('recover'));
  return seen;
}

/** Samples each delay in turn and returns `overloaded` after each. */
function run(shedder: LoadShedder, load: Load, delays: number[]): boolean[] {
  return delays.map((eventLoopDelayP99) => {
    load.set({ eventLoopDelayP99 });
    shedder.sample();
    return shedder.overloaded;
  });
}

describe('load shedding: limits', () => {
  it('defaults, frozen options, idle state', () => {
    const { shedder } = make();
    const o = shedder.options;
    assert.ok(Object.isFrozen(o));
    assert.equal(o.maxEventLoopDelay, 200);
    assert.equal(o.maxEventLoopUtilization, 0.98);
    assert.equal(o.maxHeapUsedRatio, 0.9);
    assert.equal(o.sampleInterval, 500);
    assert.equal(o.hysteresis, 0.2);
    assert.equal(o.recoverAfter, 2);
    assert.equal(o.retryAfter, 5);
    assert.deepEqual(o.gauges, {});
    assert.equal(shedder.overloaded, false);
    assert.deepEqual(shedder.reasons, []);
    assert.equal(shedder.shed, 0);
    assert.equal(shedder.lastSample, undefined);
    const sample = shedder.sample();
    assert.deepEqual(sample, IDLE);
    assert.ok(Object.isFrozen(sample) && Object.isFrozen(sample.gauges));
    assert.equal(shedder.lastSample, sample);
    assert.equal(shedder.overloaded, false);
  });

  const alone: [string, Partial<LoadSample>, string][] = [
    ['event-loop delay', { eventLoopDelayP99: 312 }, 'eventLoopDelay 312ms > 200ms'],
    ['event-loop utilization', { eventLoopUtilization: 0.99 }, 'eventLoopUtilization 0.99 > 0.98'],
    ['heap use', { heapUsedRatio: 0.95 }, 'heapUsedRatio 0.95 > 0.9'],
    ['a gauge', { gauges: { queue: 5001 } }, 'gauge queue 5001 > 5000'],
  ];
  for (const [name, values, reason] of alone) {
    it(`${name} alone starts shedding`, () => {
      const { shedder, load } = make({
        gauges: { queue: { value: () => load.current.gauges.queue ?? 0, max: 5000 } },
      });
      shedder.sample();
      assert.equal(shedder.overloaded, false);
      load.set(values);
      shedder.sample();
      assert.equal(shedder.overloaded, true);
      assert.deepEqual(shedder.reasons, [reason]);
    });
  }

  it('a value equal to its limit is not over it; the reasons list every metric over its limit', () => {
    const { shedder, load } = make({ gauges: { queue: { value: () => 10, max: 10 } } });
    load.set({ eventLoopDelayP99: 200, eventLoopUtilization: 0.98, heapUsedRatio: 0.9 });
    shedder.sample();
    assert.equal(shedder.overloaded, false);
    load.set({ eventLoopDelayP99: 200.2, heapUsedRatio: 0.9001 });
    shedder.sample();
    assert.deepEqual(shedder.reasons, ['eventLoopDelay 201ms > 200ms', 'heapUsedRatio 0.901 > 0.9']);
  });

  it('a limit that is off neither starts shedding nor holds back recovery', () => {
    const inf = Number.POSITIVE_INFINITY;
    const { shedder, load } = make({
      maxEventLoopDelay: inf,
      maxEventLoopUtilization: 1,
      maxHeapUsedRatio: inf,
    });
    assert.equal(shedder.options.maxEventLoopUtilization, inf, '1 means off');
    load.set({ eventLoopDelayP99: 1e6, eventLoopUtilization: 1, heapUsedRatio: 1 });
    shedder.sample();
    assert.equal(shedder.overloaded, false);

    const other = make({ maxEventLoopUtilization: 1, recoverAfter: 1 });
    other.load.set({ eventLoopDelayP99: 300, eventLoopUtilization: 1 }); // ELU at 1 would block recovery if on
    other.shedder.sample();
    assert.equal(other.shedder.overloaded, true);
    other.load.set({ eventLoopDelayP99: 10 });
    other.shedder.sample();
    assert.equal(other.shedder.overloaded, false);
  });
});

describe('load shedding: hysteresis', () => {
  it('values just below the limit keep shedding; recoverAfter samples below limit × (1 − h) stop it', () => {
    const { shedder, load } = make(); // limit 200, h 0.2: recovered below 160, twice in a row
    const seen = transitions(shedder);
    assert.deepEqual(run(shedder, load, [250]), [true]);
    assert.deepEqual(run(shedder, load, [199, 199, 180, 161, 160]), [true, true, true, true, true]);
    assert.deepEqual(
      run(shedder, load, [159, 170, 159]),
      [true, true, true],
      'a band sample restarts the count',
    );
    assert.deepEqual(run(shedder, load, [159]), [false]);
    assert.deepEqual(shedder.reasons, []);
    assert.deepEqual(seen, ['overload: eventLoopDelay 250ms > 200ms', 'recover']);
  });

  it('does not flap on a series oscillating around the limit', () => {
    const series = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 210 : 190));
    const { shedder, load } = make();
    const seen = transitions(shedder);
    run(shedder, load, series);
    assert.deepEqual(seen, ['overload: eventLoopDelay 210ms > 200ms']);
    assert.equal(shedder.overloaded, true);

    // Even dipping well below the threshold, one sample at a time, is not a recovery.
    const dips = make();
    const dipsSeen = transitions(dips.shedder);
    run(
      dips.shedder,
      dips.load,
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 210 : 100)),
    );
    assert.equal(dipsSeen.length, 1);

    // Without hysteresis the same series flaps on every sample: what the defaults prevent.
    const bare = make({ hysteresis: 0, recoverAfter: 1 });
    const bareSeen = transitions(bare.shedder);
    run(bare.shedder, bare.load, series);
    assert.equal(bareSeen.length, 40);
  });

  it('custom hysteresis and recoverAfter', () => {
    const { shedder, load } = make({ maxEventLoopDelay: 100, hysteresis: 0.5, recoverAfter: 3 });
    assert.deepEqual(run(shedder, load, [101, 60, 49, 49]), [true, true, true, true]);
    assert.deepEqual(run(shedder, load, [49]), [false]);
  });

  it('while shedding, the reasons follow the latest sample over a limit and no event repeats', () => {
    const { shedder, load } = make();
    const seen = transitions(shedder);
    load.set({ eventLoopDelayP99: 300 });
    shedder.sample();
    load.set({ eventLoopDelayP99: 170, heapUsedRatio: 0.95 });
    shedder.sample();
    assert.deepEqual(shedder.reasons, ['heapUsedRatio 0.95 > 0.9']);
    load.set({ heapUsedRatio: 0.85 }); // in the band: still shedding, for the last reasons
    shedder.sample();
    assert.deepEqual(shedder.reasons, ['heapUsedRatio 0.95 > 0.9']);
    assert.equal(seen.length, 1);
  });
});

describe('load shedding: gauges and events', () => {
  it('reads gauges at each sample, merged over the sampler’s', () => {
    let depth = 0;
    const { shedder, load } = make({ gauges: { queue: { value: () => depth, max: 5000 } } });
    load.set({ gauges: { other: 7, queue: 1 } });
    assert.deepEqual(shedder.sample().gauges, { other: 7, queue: 0 });
    depth = 5001;
    assert.deepEqual(shedder.sample().gauges, { other: 7, queue: 5001 });
    assert.deepEqual(shedder.reasons, ['gauge queue 5001 > 5000']);
    depth = 4000; // 5000 × 0.8: not below it
    shedder.sample();
    shedder.sample();
    assert.equal(shedder.overloaded, true);
    depth = 3999;
    shedder.sample();
    shedder.sample();
    assert.equal(shedder.overloaded, false);
  });

  it('a gauge that throws or returns no number counts as not overloaded and emits gaugeError', () => {
    const boom = new Error('boom');
    const fail = (): number => {
      throw boom;
    };
    const { shedder, load } = make({
      recoverAfter: 1,
      gauges: {
        broken: { value: fail, max: 1 },
        text: { value: () => 'many' as unknown as number, max: 1 },
      },
    });
    const errors: [string, unknown][] = [];
    shedder.on('gaugeError', (name, err) => errors.push([name, err]));
    const sample = shedder.sample();
    assert.ok(Number.isNaN(sample.gauges.broken) && Number.isNaN(sample.gauges.text));
    assert.equal(shedder.overloaded, false);
    assert.equal(errors.length, 2);
    assert.deepEqual(errors[0], ['broken', boom]);
    assert.equal(errors[1]?.[0], 'text');
    assert.ok(errors[1]?.[1] instanceof TypeError);
    // Nor does it hold back recovery.
    load.set({ eventLoopDelayP99: 500 });
    shedder.sample();
    load.set({ eventLoopDelayP99: 1 });
    shedder.sample();
    assert.equal(shedder.overloaded, false);
  });

  it('a gauge with max Infinity is reported but never sheds; max 0 sheds on anything and recovers at 0', () => {
    let depth = 1e9;
    const { shedder } = make({
      recoverAfter: 1,
      gauges: {
        seen: { value: () => depth, max: Number.POSITIVE_INFINITY },
        strict: { value: () => depth % 2, max: 0 },
      },
    });
    assert.equal(shedder.sample().gauges.seen, 1e9);
    assert.equal(shedder.overloaded, false);
    depth = 1;
    shedder.sample();
    assert.deepEqual(shedder.reasons, ['gauge strict 1 > 0']);
    depth = 2;
    shedder.sample();
    assert.equal(shedder.overloaded, false);
  });

  it('emits overload (reasons, sample) and recover (sample) once per transition', () => {
    const { shedder, load } = make({ recoverAfter: 1 });
    const overloads: [string[], LoadSample][] = [];
    const recovers: LoadSample[] = [];
    shedder.on('overload', (reasons, sample) => overloads.push([reasons, sample]));
    shedder.on('recover', (sample) => recovers.push(sample));
    load.set({ eventLoopDelayP99: 300 });
    const first = shedder.sample();
    shedder.sample();
    shedder.sample();
    assert.deepEqual(overloads, [[['eventLoopDelay 300ms > 200ms'], first]]);
    load.set({ eventLoopDelayP99: 1 });
    const calm = shedder.sample();
    shedder.sample();
    assert.deepEqual(recovers, [calm]);
    load.set({ eventLoopDelayP99: 300 });
    shedder.sample();
    assert.equal(overloads.length, 2);
  });
});

describe('load shedding: requests', () => {
  it('exempt paths are never shed; nothing is shed when not overloaded', () => {
    const { shedder, load } = make();
    assert.equal(shedder.shouldShed('/upload'), false);
    load.set({ eventLoopDelayP99: 999 });
    shedder.sample();
    for (const url of ['/health', '/health/ready', '/healthz', '/metrics', '/metrics?name=x']) {
      assert.equal(shedder.shouldShed(url), false, url);
    }
    for (const url of ['/', '/upload', '/api/health']) assert.equal(shedder.shouldShed(url), true, url);

    const custom = make({ exempt: (url) => url.startsWith('/internal') });
    custom.load.set({ eventLoopDelayP99: 999 });
    custom.shedder.sample();
    assert.equal(custom.shedder.shouldShed('/internal/x'), false);
    assert.equal(custom.shedder.shouldShed('/health'), true, 'a custom exempt replaces the default');
  });

  it('node:http guard: 503 with Retry-After and the reasons, exempt routes pass, 200 after recovery', async () => {
    let depth = 0;
    const { shedder } = make({
      retryAfter: 7,
      recoverAfter: 1,
      gauges: { queue: { value: () => depth, max: 5 } },
    });
    const guard = shedder.handler();
    const server = createServer((req, res) => {
      if (guard(req, res)) return;
      res.end('ok');
    });
    server.listen(0, '127.0.0.1');
    await within(once(server, 'listening'), 5_000, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const get = async (path: string) => {
      const res = await within(fetch(base + path), 5_000, `GET ${path}`);
      return { res, body: await within(res.text(), 5_000, `body of ${path}`) };
    };
    try {
      assert.equal((await get('/upload')).res.status, 200);
      depth = 6;
      shedder.sample();
      const { res, body } = await get('/upload');
      assert.equal(res.status, 503);
      assert.equal(res.headers.get('retry-after'), '7');
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.deepEqual(JSON.parse(body), { error: 'overloaded', reasons: ['gauge queue 6 > 5'] });
      assert.equal((await get('/health/ready')).res.status, 200);
      assert.equal(shedder.shed, 1);
      depth = 0;
      shedder.sample();
      const after = await get('/upload');
      assert.equal(after.res.status, 200);
      assert.equal(after.body, 'ok');
      assert.equal(shedder.shed, 1);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('express-style (req, res, next): next only when not shed; the mount-free originalUrl decides', () => {
    const { shedder, load } = make();
    const guard = shedder.handler();
    const written: unknown[][] = [];
    const res: ShedResponse = {
      writeHead: (...args) => written.push(['writeHead', ...args]),
      end: (body) => written.push(['end', body]),
    };
    let nexts = 0;
    const next = () => void nexts++;
    assert.equal(guard({ url: '/x', originalUrl: '/api/x' }, res, next), false);
    assert.equal(nexts, 1);
    load.set({ eventLoopDelayP99: 400 });
    shedder.sample();
    // Mounted at /health, express strips it from `url`: `originalUrl` still says it is exempt.
    assert.equal(guard({ url: '/ready', originalUrl: '/health/ready' }, res, next), false);
    assert.equal(nexts, 2);
    assert.equal(guard({ url: '/x', originalUrl: '/api/x' }, res, next), true);
    assert.equal(nexts, 2);
    const body = JSON.stringify({ error: 'overloaded', reasons: ['eventLoopDelay 400ms > 200ms'] });
    assert.deepEqual(written, [
      [
        'writeHead',
        503,
        {
          'content-type': 'application/json; charset=utf-8',
          'cache-control': 'no-store',
          'retry-after': '5',
          'content-length': Buffer.byteLength(body),
        },
      ],
      ['end', body],
    ]);
    assert.equal(shedder.shed, 1);
  });

  it('fastify-style onRequest hook (request, reply, done): answers through the reply and skips done', () => {
    const { shedder, load } = make({ retryAfter: 3 });
    const guard = shedder.handler();
    const sent = { status: 0, headers: {} as Record<string, string>, payload: undefined as unknown };
    const reply: ShedReply = {
      raw: {},
      code: (status) => {
        sent.status = status;
        return reply;
      },
      header: (name, value) => {
        sent.headers[name] = value;
        return reply;
      },
      send: (payload) => {
        sent.payload = payload;
        return reply;
      },
    };
    let dones = 0;
    const done = () => void dones++;
    assert.equal(guard({ url: '/upload', raw: { url: '/upload' } }, reply, done), false);
    assert.equal(dones, 1);
    load.set({ heapUsedRatio: 0.97 });
    shedder.sample();
    assert.equal(guard({ url: '/metrics', raw: { url: '/metrics' } }, reply, done), false);
    assert.equal(dones, 2);
    assert.equal(guard({ url: '/upload', raw: { url: '/upload' } }, reply, done), true);
    assert.equal(dones, 2);
    assert.equal(sent.status, 503);
    assert.equal(sent.headers['retry-after'], '3');
    assert.match(sent.headers['content-type'] ?? '', /^application\/json/);
    assert.deepEqual(JSON.parse(String(sent.payload)), {
      error: 'overloaded',
      reasons: ['heapUsedRatio 0.97 > 0.9'],
    });
    assert.equal(shedder.shed, 1);
  });
});

/** Blocks the event loop for `ms`, from inside a timer callback. */
function blockInTimer(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setTimeout(() => {
      const end = performance.now() + ms;
      while (performance.now() < end);
      resolve();
    }, 0),
  );
}

describe('load shedding: the built-in sampler', () => {
  it('reports a blocked event loop as a delay p99 above 200 ms and sheds', async () => {
    const shedder = track(new LoadShedder({ timer: false }));
    const idle = shedder.sample(); // a fresh interval: the block comes right after the histogram's reset
    assert.ok(idle.eventLoopUtilization >= 0 && idle.eventLoopUtilization <= 1);
    assert.ok(idle.heapUsedRatio > 0 && idle.heapUsedRatio < 1);
    await blockInTimer(300);
    // Let the delay monitor's timer tick once after the block: it records the delay when it runs.
    await sleep(20);
    await immediate();
    const sample = shedder.sample();
    assert.ok(sample.eventLoopDelayP99 > 200, `p99 ${sample.eventLoopDelayP99} ms`);
    assert.ok(sample.eventLoopDelayP99 < 5_000, `p99 ${sample.eventLoopDelayP99} ms`);
    assert.ok(sample.eventLoopUtilization > 0.5 && sample.eventLoopUtilization <= 1);
    assert.equal(shedder.overloaded, true);
    assert.ok(
      shedder.reasons.some((r) => /^eventLoopDelay \d+ms > 200ms$/.test(r)),
      shedder.reasons.join('; '),
    );
  });

  it('on its timer, emits overload when the event loop is blocked', async () => {
    const shedder = track(new LoadShedder({ sampleInterval: 50 }));
    const overload = nextEvent<string[]>(shedder, 'overload', 10_000);
    await blockInTimer(300);
    const reasons = await overload;
    assert.ok(
      reasons.some((r) => r.startsWith('eventLoopDelay')),
      reasons.join('; '),
    );
  });
});

describe('load shedding: close', () => {
  it('is idempotent, stops shedding and sampling', async () => {
    const { shedder, load } = make({ timer: true, sampleInterval: 5 });
    load.set({ eventLoopDelayP99: 300 });
    await nextEvent(shedder, 'overload', 5_000); // the timer samples
    assert.equal(shedder.shouldShed('/upload'), true);
    const last = shedder.lastSample;
    shedder.close();
    shedder.close();
    assert.equal(shedder.overloaded, false);
    assert.equal(shedder.shouldShed('/upload'), false);
    assert.equal(shedder.handler()({ url: '/upload' }, { writeHead: assert.fail, end: assert.fail }), false);
    const calls = load.calls;
    assert.equal(shedder.sample(), last, 'a closed shedder samples nothing');
    // Proving that nothing happens takes time: ten sample intervals.
    await sleep(50);
    assert.equal(load.calls, calls);
    await shedder[Symbol.asyncDispose]();
  });

  it('emits error when an injected sampler throws on a timer sample', async () => {
    const boom = new Error('sampler broke');
    const shedder = track(
      new LoadShedder({
        sampleInterval: 5,
        sampler: () => {
          throw boom;
        },
      }),
    );
    assert.equal(await nextEvent(shedder, 'error', 5_000), boom);
  });

  const children = new Set<ChildProcess>();
  after(() => {
    for (const child of children)
      if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  });

  it('leaves no handle: a process with an unclosed shedder, timer on, exits by itself', async () => {
    const url = new URL('../../src/lifecycle/shed.ts', import.meta.url).href;
    const code = `
      import { LoadShedder } from ${JSON.stringify(url)};
      const shedder = new LoadShedder({ sampleInterval: 10 });
      shedder.sample();
      setTimeout(() => console.log('samples', shedder.lastSample !== undefined), 50);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk) => {
      out += chunk;
    });
    const [exitCode] = await within(once(child, 'exit'), 10_000, 'the child to exit');
    assert.equal(exitCode, 0, out);
    assert.match(out, /samples true/);
  });
});

/** JSON.stringify replacer that keeps NaN, Infinity and functions visible in test names. */
const shown = (_: string, v: unknown) =>
  typeof v === 'function' ? 'fn' : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v;

describe('load shedding: options', () => {
  const bad: [string, unknown][] = [
    ['maxEventLoopDelay', { maxEventLoopDelay: 0 }],
    ['maxEventLoopDelay', { maxEventLoopDelay: -1 }],
    ['maxEventLoopDelay', { maxEventLoopDelay: Number.NaN }],
    ['maxEventLoopDelay', { maxEventLoopDelay: '200' }],
    ['maxEventLoopUtilization', { maxEventLoopUtilization: 0 }],
    ['maxEventLoopUtilization', { maxEventLoopUtilization: 1.5 }],
    ['maxHeapUsedRatio', { maxHeapUsedRatio: 2 }],
    ['maxHeapUsedRatio', { maxHeapUsedRatio: -0.5 }],
    ['sampleInterval', { sampleInterval: 0 }],
    ['sampleInterval', { sampleInterval: 2 ** 31 }],
    ['sampleInterval', { sampleInterval: Number.POSITIVE_INFINITY }],
    ['hysteresis', { hysteresis: 1 }],
    ['hysteresis', { hysteresis: -0.1 }],
    ['recoverAfter', { recoverAfter: 0 }],
    ['recoverAfter', { recoverAfter: 1.5 }],
    ['retryAfter', { retryAfter: -1 }],
    ['retryAfter', { retryAfter: 2.5 }],
    ['exempt', { exempt: '/health' }],
    ['sampler', { sampler: 42 }],
    ['timer', { timer: 'yes' }],
    ['gauges', { gauges: [] }],
    ['gauges.queue', { gauges: { queue: 5 } }],
    ['gauges.queue', { gauges: { queue: { max: 5 } } }],
    ['gauges.queue.max', { gauges: { queue: { value: () => 1 } } }],
    ['gauges.queue.max', { gauges: { queue: { value: () => 1, max: -1 } } }],
    ['options', null],
  ];
  for (const [option, options] of bad) {
    it(`rejects a bad ${option}: ${JSON.stringify(options, shown)}`, () => {
      assert.throws(() => new LoadShedder(options as LoadShedderOptions), invalidOption(option));
    });
  }

  it('accepts Infinity for every limit and 0 for hysteresis and retryAfter', () => {
    const inf = Number.POSITIVE_INFINITY;
    const { shedder } = make({
      maxEventLoopDelay: inf,
      maxEventLoopUtilization: inf,
      maxHeapUsedRatio: inf,
      hysteresis: 0,
      retryAfter: 0,
      gauges: { q: { value: () => 0, max: inf } },
    });
    assert.equal(shedder.options.maxEventLoopDelay, inf);
    assert.equal(shedder.options.retryAfter, 0);
    assert.ok(Object.isFrozen(shedder.options.gauges) && Object.isFrozen(shedder.options.gauges.q));
  });
});
