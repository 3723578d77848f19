import { EventEmitter } from 'node:events';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { InvalidOptionError } from '../errors.ts';
import { MAX_TIMER } from '../validate.ts';
import { type FastifyLikeReply, isFastifyReply } from './reply.ts';

/** A user metric such as a queue depth: shedding starts when `value()` passes `max` (Infinity: report only). */
export interface Gauge {
  /** Read at every sample. A throw or a non-number counts as "not overloaded" and emits `gaugeError`. */
  value: () => number;
  max: number;
}

/** One reading of the process's load. */
export interface LoadSample {
  /** p99 of the event-loop delay over the last interval, in ms (the monitor's own resolution not counted). */
  eventLoopDelayP99: number;
  /** Share of the last interval the event loop was busy, 0..1. */
  eventLoopUtilization: number;
  /** V8 heap used / `heap_size_limit`. */
  heapUsedRatio: number;
  /** Each gauge's value; NaN for a gauge whose `value()` threw or returned no number. */
  gauges: Record<string, number>;
}

/** Options of {@link LoadShedder}, validated once, at construction. */
export interface LoadShedderOptions {
  /** Ms, p99 of the event-loop delay over the last interval. Infinity: off. Default: 200. */
  maxEventLoopDelay?: number;
  /** 0..1 over the last interval. 1 or Infinity: off. Default: 0.98. */
  maxEventLoopUtilization?: number;
  /** Heap used / heap size limit. Infinity: off. Default: 0.9. */
  maxHeapUsedRatio?: number;
  /** User gauges by name, e.g. `{ queue: { value: () => queue.size, max: 5000 } }`. */
  gauges?: Record<string, Gauge>;
  /** Ms between timer samples. Default: 500. */
  sampleInterval?: number;
  /** 0 ≤ h < 1: once shedding, a metric counts as recovered only below limit × (1 − h). Default: 0.2. */
  hysteresis?: number;
  /** Consecutive samples with every metric recovered before shedding stops. Default: 2. */
  recoverAfter?: number;
  /** Whole seconds sent in `Retry-After`. Default: 5. */
  retryAfter?: number;
  /** URLs never shed. Default: those starting with `/health` or `/metrics`. */
  exempt?: (url: string) => boolean;
  /** Replaces the built-in measurement (for tests); `gauges` are still read and override its `gauges`. */
  sampler?: () => LoadSample;
  /** Sample every `sampleInterval` on an unref'd timer (true) or only on `sample()` (false). Default: true. */
  timer?: boolean;
}

/** The validated, defaulted, frozen form of {@link LoadShedderOptions}; a limit that is off is Infinity. */
export type ResolvedLoadShedderOptions = Readonly<
  Required<Omit<LoadShedderOptions, 'gauges' | 'sampler'>> & {
    gauges: Readonly<Record<string, Readonly<Gauge>>>;
    sampler: (() => LoadSample) | undefined;
  }
>;

/** Events of {@link LoadShedder}. */
export interface LoadShedderEvents {
  /** Shedding started (once per transition): why, and the sample that started it. */
  overload: [reasons: string[], sample: LoadSample];
  /** Shedding stopped (once per transition). */
  recover: [sample: LoadSample];
  /** A gauge's `value()` threw or returned no number; that gauge counted as not overloaded. */
  gaugeError: [name: string, error: unknown];
  /** An injected sampler threw on a timer sample; with no listener, an uncaught exception as for any emitter. */
  error: [error: unknown];
}

/** What the guard reads of a request; node:http, express and fastify requests fit. */
export interface ShedRequest {
  readonly url?: string | undefined;
  /** express: the URL before a mount path was stripped. */
  readonly originalUrl?: string | undefined;
  readonly raw?: { readonly url?: string | undefined } | undefined;
}

/** What the guard uses of a node:http or express response; `ServerResponse` fits. */
export interface ShedResponse {
  writeHead(statusCode: number, headers: Record<string, string | number>): unknown;
  end(body: string): unknown;
}

/** What the guard uses of a fastify reply; `FastifyReply` fits. */
export type ShedReply = FastifyLikeReply;

/**
 * node:http guard `(req, res)`, express middleware `(req, res, next)` or fastify `onRequest` hook
 * `(request, reply, done)`: true when it answered 503, and then `next`/`done` is not called.
 */
export type ShedGuard = (req: ShedRequest, res: ShedResponse | ShedReply, next?: () => void) => boolean;

interface Limit {
  readonly label: string;
  readonly unit: string;
  readonly limit: number;
  readonly read: (sample: LoadSample) => number;
}

interface Sampler {
  /** `lateness`: ms a timer sample ran late, itself a measure of event-loop delay. */
  readonly sample: (lateness: number) => LoadSample;
  readonly close: () => void;
}

/** Resolution of the event-loop delay monitor, ms. */
const RESOLUTION = 10;
const HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' } as const;
const IDLE: LoadSample = Object.freeze({
  eventLoopDelayP99: 0,
  eventLoopUtilization: 0,
  heapUsedRatio: 0,
  gauges: Object.freeze({}),
});

/**
 * Answers 503 with `Retry-After` while the process is overloaded: event-loop delay p99, event-loop utilization,
 * heap use or a user gauge passed its limit. Shedding starts on the first sample over any limit and stops only
 * after `recoverAfter` consecutive samples with every metric below limit × (1 − hysteresis), so it does not flap.
 * Exempt URLs (health, metrics) are never shed. Once closed it is inert: nothing is shed.
 *
 * @example
 * ```ts
 * const shedder = new LoadShedder({ gauges: { queue: { value: () => queue.size, max: 5_000 } } });
 * fastify.addHook('onRequest', shedder.handler()); // or app.use(shedder.handler()) in express
 * const guard = shedder.handler();                 // node:http
 * http.createServer((req, res) => { if (guard(req, res)) return; route(req, res); });
 * shedder.on('overload', (reasons) => logger.warn({ reasons }, 'shedding load'));
 * ```
 */
export class LoadShedder extends EventEmitter<LoadShedderEvents> {
  readonly #options: ResolvedLoadShedderOptions;
  readonly #limits: readonly Limit[];
  readonly #builtin: Sampler | undefined;
  #interval: NodeJS.Timeout | undefined;
  /** `performance.now()` when the next timer sample is due. */
  #due = 0;
  #overloaded = false;
  #reasons: readonly string[] = [];
  /** Consecutive recovered samples while overloaded. */
  #calm = 0;
  #shed = 0;
  #last: LoadSample | undefined;
  #closed = false;

  constructor(options: LoadShedderOptions = {}) {
    super();
    const o = resolveOptions(options);
    this.#options = o;
    this.#limits = limitsOf(o);
    this.#builtin = o.sampler === undefined ? builtinSampler() : undefined;
    if (o.timer) {
      // Unref'd: sampling must never keep alive a process that has nothing else to do.
      this.#interval = setInterval(() => this.#tick(), o.sampleInterval).unref();
      this.#due = performance.now() + o.sampleInterval;
    }
  }

  get options(): ResolvedLoadShedderOptions {
    return this.#options;
  }

  get overloaded(): boolean {
    return this.#overloaded;
  }

  /** Why it sheds, e.g. `['eventLoopDelay 312ms > 200ms', 'gauge queue 5001 > 5000']`; empty when it does not. */
  get reasons(): string[] {
    return [...this.#reasons];
  }

  /** Requests answered 503 so far. */
  get shed(): number {
    return this.#shed;
  }

  get lastSample(): LoadSample | undefined {
    return this.#last;
  }

  /**
   * Takes a sample now, updates the state (emitting `overload` or `recover` on a transition) and returns it,
   * frozen. Once closed, samples nothing and returns the last sample (or an idle one).
   *
   * @example
   * ```ts
   * const { eventLoopDelayP99, eventLoopUtilization } = shedder.sample();
   * ```
   */
  sample(): LoadSample {
    return this.#take(0);
  }

  /**
   * True when a request for `url` is to be answered 503: overloaded, and `url` is not exempt.
   *
   * @example
   * ```ts
   * if (shedder.shouldShed(req.url)) return res.writeHead(503).end();
   * ```
   */
  shouldShed(url: string): boolean {
    return this.#overloaded && !this.#options.exempt(url);
  }

  /**
   * One guard for node:http, express and fastify (see {@link ShedGuard}); each 503 it sends counts in `shed`.
   * The body is `{"error":"overloaded","reasons":[...]}`.
   *
   * @example
   * ```ts
   * const guard = shedder.handler();
   * http.createServer((req, res) => { if (guard(req, res)) return; res.end('ok'); });
   * ```
   */
  handler(): ShedGuard {
    return (req, res, next) => {
      if (!this.shouldShed(req.originalUrl ?? req.url ?? req.raw?.url ?? '/')) {
        next?.();
        return false;
      }
      this.#shed++;
      const body = JSON.stringify({ error: 'overloaded', reasons: this.#reasons });
      const retryAfter = String(this.#options.retryAfter);
      if (isFastifyReply(res)) {
        // An onRequest hook that answers and never calls `done` ends the request there.
        res.code(503);
        res.header('retry-after', retryAfter);
        for (const [name, value] of Object.entries(HEADERS)) res.header(name, value);
        res.send(body);
      } else {
        const length = Buffer.byteLength(body);
        res.writeHead(503, { ...HEADERS, 'retry-after': retryAfter, 'content-length': length });
        res.end(body);
      }
      return true;
    };
  }

  /** Stops the timer and the delay monitor; from then on nothing is shed. Idempotent; leaves no handle. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#interval);
    this.#builtin?.close();
    this.#overloaded = false;
    this.#reasons = [];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #tick(): void {
    const now = performance.now();
    const lateness = now - this.#due;
    this.#due = now + this.#options.sampleInterval;
    try {
      this.#take(lateness);
    } catch (err) {
      this.emit('error', err);
    }
  }

  #take(lateness: number): LoadSample {
    if (this.#closed) return this.#last ?? IDLE;
    const raw = this.#builtin?.sample(lateness) ?? (this.#options.sampler as () => LoadSample)();
    const gauges: Record<string, number> = { ...raw.gauges };
    for (const [name, gauge] of Object.entries(this.#options.gauges)) gauges[name] = this.#read(name, gauge);
    const { eventLoopDelayP99, eventLoopUtilization, heapUsedRatio } = raw;
    const sample = Object.freeze({ eventLoopDelayP99, eventLoopUtilization, heapUsedRatio, gauges });
    Object.freeze(gauges);
    this.#last = sample;
    this.#update(sample);
    return sample;
  }

  #read(name: string, gauge: Gauge): number {
    try {
      const value = gauge.value();
      if (typeof value === 'number' && !Number.isNaN(value)) return value;
      throw new TypeError(`gauge "${name}" returned ${typeof value === 'number' ? 'NaN' : typeof value}`);
    } catch (err) {
      // A broken gauge must neither crash the process nor shed traffic: it counts as not overloaded.
      this.emit('gaugeError', name, err);
      return Number.NaN;
    }
  }

  #update(sample: LoadSample): void {
    const over = this.#limits.filter((l) => l.read(sample) > l.limit).map((l) => reason(l, sample));
    if (!this.#overloaded) {
      if (over.length === 0) return;
      this.#overloaded = true;
      this.#calm = 0;
      this.#reasons = Object.freeze(over);
      this.emit('overload', [...over], sample);
      return;
    }
    // A sample inside the hysteresis band (not over, not recovered) keeps shedding for the last reasons.
    if (over.length > 0) this.#reasons = Object.freeze(over);
    const factor = 1 - this.#options.hysteresis;
    const calm = this.#limits.every((l) => recovered(l.read(sample), l.limit * factor));
    this.#calm = calm ? this.#calm + 1 : 0;
    if (this.#calm < this.#options.recoverAfter) return;
    this.#overloaded = false;
    this.#reasons = [];
    this.emit('recover', sample);
  }
}

/** NaN (a broken gauge) counts as recovered; so does 0, else a gauge with `max: 0` could never recover. */
function recovered(value: number, threshold: number): boolean {
  return !(value >= threshold) || value <= 0;
}

function reason(l: Limit, sample: LoadSample): string {
  const value = l.read(sample);
  // Rounded up, so the text never shows a value equal to the limit it passed.
  const shown = l.unit === 'ms' ? Math.ceil(value) : Math.ceil(value * 1000) / 1000;
  return `${l.label} ${shown}${l.unit} > ${l.limit}${l.unit}`;
}

function limitsOf(o: ResolvedLoadShedderOptions): readonly Limit[] {
  const limit = (label: string, unit: string, max: number, read: Limit['read']): Limit =>
    Object.freeze({ label, unit, limit: max, read });
  const limits = [
    limit('eventLoopDelay', 'ms', o.maxEventLoopDelay, (s) => s.eventLoopDelayP99),
    limit('eventLoopUtilization', '', o.maxEventLoopUtilization, (s) => s.eventLoopUtilization),
    limit('heapUsedRatio', '', o.maxHeapUsedRatio, (s) => s.heapUsedRatio),
    ...Object.entries(o.gauges).map(([name, g]) =>
      limit(`gauge ${name}`, '', g.max, (s) => s.gauges[name] ?? Number.NaN),
    ),
  ];
  // A limit that is off neither starts shedding nor holds back recovery.
  return Object.freeze(limits.filter((l) => l.limit !== Number.POSITIVE_INFINITY));
}

/**
 * `monitorEventLoopDelay` reset at each sample, `eventLoopUtilization` deltas and V8 heap statistics.
 *
 * Why the probe: the histogram records the time between two of its timer's ticks, and `reset()` (like `enable()`)
 * forgets the previous tick, so the first tick after it records nothing (seen on Node 24): a block starting before
 * that tick would be lost. A one-shot timer armed at each reset, due one resolution later, fires late by about as
 * much as such a block lasted. Likewise a block that ends just before a timer sample whose timer runs ahead of the
 * histogram's tick: that sample's own lateness counts. Both join the p99 as a maximum.
 */
function builtinSampler(): Sampler {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION });
  histogram.enable();
  let elu = performance.eventLoopUtilization();
  let probe: NodeJS.Timeout | undefined;
  let due = 0;
  let probeLag = 0;
  const arm = () => {
    due = performance.now() + RESOLUTION;
    probe = setTimeout(() => {
      probe = undefined;
      probeLag = performance.now() - due;
    }, RESOLUTION).unref();
  };
  arm();
  return {
    sample(lateness) {
      const pending = probe === undefined ? 0 : performance.now() - due;
      clearTimeout(probe);
      // Each recorded value is a whole tick interval: the resolution itself is not delay.
      const recorded = histogram.count > 0 ? histogram.percentile(99) / 1e6 - RESOLUTION : 0;
      const eventLoopDelayP99 = Math.max(0, recorded, probeLag, pending, lateness);
      histogram.reset();
      probeLag = 0;
      arm();
      const now = performance.eventLoopUtilization();
      const { utilization } = performance.eventLoopUtilization(now, elu);
      elu = now;
      const heap = getHeapStatistics();
      const heapUsedRatio = heap.used_heap_size / heap.heap_size_limit;
      return { eventLoopDelayP99, eventLoopUtilization: utilization, heapUsedRatio, gauges: {} };
    },
    close() {
      clearTimeout(probe);
      histogram.disable();
    },
  };
}

function resolveOptions(options: LoadShedderOptions): ResolvedLoadShedderOptions {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const { exempt = defaultExempt, sampler, timer = true } = options;
  if (typeof exempt !== 'function') throw new InvalidOptionError('exempt', 'a function', exempt);
  if (sampler !== undefined && typeof sampler !== 'function') {
    throw new InvalidOptionError('sampler', 'a function', sampler);
  }
  if (typeof timer !== 'boolean') throw new InvalidOptionError('timer', 'a boolean', timer);
  const upTo1 = (n: number) => n > 0 && (n <= 1 || n === Number.POSITIVE_INFINITY);
  const ratio = 'a number > 0 and <= 1, or Infinity (off)';
  const elu = num(options, 'maxEventLoopUtilization', 0.98, upTo1, ratio);
  const int = (min: number) => (n: number) => Number.isSafeInteger(n) && n >= min;
  const interval = (n: number) => n > 0 && n <= MAX_TIMER;
  return Object.freeze({
    maxEventLoopDelay: num(
      options,
      'maxEventLoopDelay',
      200,
      (n) => n > 0,
      'a number of ms > 0, or Infinity',
    ),
    maxEventLoopUtilization: elu === 1 ? Number.POSITIVE_INFINITY : elu,
    maxHeapUsedRatio: num(options, 'maxHeapUsedRatio', 0.9, upTo1, ratio),
    gauges: resolveGauges(options.gauges),
    sampleInterval: num(options, 'sampleInterval', 500, interval, `a number of ms > 0 and <= ${MAX_TIMER}`),
    hysteresis: num(options, 'hysteresis', 0.2, (n) => n >= 0 && n < 1, 'a number >= 0 and < 1'),
    recoverAfter: num(options, 'recoverAfter', 2, int(1), 'an integer >= 1'),
    retryAfter: num(options, 'retryAfter', 5, int(0), 'an integer number of seconds >= 0'),
    exempt,
    sampler,
    timer,
  });
}

const defaultExempt = (url: string): boolean => url.startsWith('/health') || url.startsWith('/metrics');

function num(o: object, key: string, fallback: number, ok: (n: number) => boolean, what: string): number {
  const value = (o as Record<string, unknown>)[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !ok(value)) throw new InvalidOptionError(key, what, value);
  return value;
}

function resolveGauges(gauges: unknown): Readonly<Record<string, Readonly<Gauge>>> {
  if (gauges === undefined) return Object.freeze({});
  if (typeof gauges !== 'object' || gauges === null || Array.isArray(gauges)) {
    throw new InvalidOptionError('gauges', 'an object of { value(), max }', gauges);
  }
  const resolved: Record<string, Readonly<Gauge>> = {};
  for (const [name, gauge] of Object.entries(gauges)) {
    const g = gauge as Partial<Record<keyof Gauge, unknown>> | null;
    if (typeof g !== 'object' || g === null || typeof g.value !== 'function') {
      throw new InvalidOptionError(`gauges.${name}`, 'an object with a value() function and a max', gauge);
    }
    if (typeof g.max !== 'number' || !(g.max >= 0)) {
      throw new InvalidOptionError(`gauges.${name}.max`, 'a number >= 0, or Infinity (off)', g.max);
    }
    resolved[name] = Object.freeze({ value: g.value as () => number, max: g.max });
  }
  return Object.freeze(resolved);
}
