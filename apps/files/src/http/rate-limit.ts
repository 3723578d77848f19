/**
 * Uploads a minute per client address (`FILES_UPLOADS_PER_MINUTE`), by @fastify/rate-limit with a store every
 * process shares: on one machine the supervisor's shared counters (`worker.counter()` of weftjs/cluster), so N
 * workers let the limit through, not N times it; with `QUEUE_URL` the plugin's own Redis store on the queue's Redis,
 * so the limit holds across every node. A refused upload is answered `429 ERR_WEFT_FILES_RATE_LIMITED` with
 * `Retry-After` and the `RateLimit-Limit`/`-Remaining`/`-Reset` headers (IETF draft) before its body is read, so it
 * leaves nothing behind. A store that cannot answer (Redis away) lets uploads through and is logged.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { worker } from 'weftjs/cluster';
import { FilesError } from '../errors.ts';
import { ThrottledLog } from '../log-throttle.ts';
import type { Logger } from '../logger.ts';
import type { Viewer } from '../tokens.ts';
import { viewerOf } from './auth.ts';

type Result = { current: number; ttl: number };
type Callback = (err: Error | null, res?: Result) => void;

/**
 * A @fastify/rate-limit store on weftjs/cluster's shared counters: each key a counter with a window of the limit's
 * time window (fixed window, as the plugin's own stores count).
 */
export class ClusterCounterStore {
  readonly #prefix: string;

  constructor(_params?: unknown, prefix = 'files:rate:') {
    this.#prefix = prefix;
  }

  #name(key: string): string {
    // Counter names are printable ASCII without spaces: a key that is not (never an IP address) is encoded.
    const safe = /^[\x21-\x7e]{1,150}$/.test(key) ? key : encodeURIComponent(key).slice(0, 150);
    return `${this.#prefix}${safe}`;
  }

  incr(key: string, cb: Callback, timeWindow: number): void {
    worker
      .counter(this.#name(key))
      .add(1, { ttlMs: timeWindow })
      .then(
        ({ value, resetAt }) =>
          cb(null, { current: value, ttl: Math.max(0, (resetAt ?? Date.now() + timeWindow) - Date.now()) }),
        (err: Error) => cb(err),
      );
  }

  read(key: string, cb: Callback): void {
    worker
      .counter(this.#name(key))
      .get()
      .then(
        ({ value, resetAt }) =>
          cb(null, { current: value, ttl: resetAt === undefined ? 0 : Math.max(0, resetAt - Date.now()) }),
        (err: Error) => cb(err),
      );
  }

  child(params: { groupId?: string; routeInfo?: { method?: string; url?: string } }): ClusterCounterStore {
    const scope = params.groupId ?? `${params.routeInfo?.method ?? ''}${params.routeInfo?.url ?? ''}`;
    return new ClusterCounterStore(undefined, `${this.#prefix}${scope}:`);
  }
}

/** What an upload is counted against: its tenant, else its token, else its client's address. */
export function limitKey(viewer: Viewer, ip: string): string {
  if (viewer.tenant !== null) return `tenant:${viewer.tenant}`;
  // An open service, or FILES_TOKEN that every client of the operator shares: per client address, as before tenants.
  if (viewer.shared) return `ip:${ip}`;
  return `token:${viewer.tokenId}`;
}

function describeKey(key: string): string {
  if (key.startsWith('tenant:')) return `for tenant ${key.slice(7)}`;
  if (key.startsWith('token:')) return `with token ${key.slice(6)}`;
  return 'from this address';
}

export interface UploadLimitOptions {
  /** Uploads a minute per client address; 0: no limit (nothing is registered). */
  perMinute: number;
  /** With `QUEUE_URL`: the queue's Redis (an ioredis client) and a key prefix. */
  redis?: { client: unknown; nameSpace: string } | undefined;
  log: Logger;
  /** Told of each refused upload (the service's metrics). */
  onRefused?: () => void;
}

/** An `onRequest` hook that counts an upload against its client's limit; undefined when there is no limit. */
export type UploadLimit = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * Registers @fastify/rate-limit on `app` (for the routes that ask, not globally) and returns the upload routes' hook.
 *
 * @example
 * ```ts
 * const limit = await uploadLimit(app, { perMinute: 60, log });
 * app.post('/files', { onRequest: limit ? [limit, auth] : [auth] }, upload);
 * ```
 */
export async function uploadLimit(
  app: FastifyInstance,
  options: UploadLimitOptions,
): Promise<UploadLimit | undefined> {
  if (options.perMinute <= 0) return undefined;
  const errors = new ThrottledLog(options.log);
  await app.register(rateLimit, {
    global: false,
    // RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset and Retry-After.
    enableDraftSpec: true,
    // A store that cannot answer rejects here; the hook below logs it and lets the upload through (it stays durable).
    skipOnError: false,
    ...(options.redis
      ? { redis: options.redis.client as never, nameSpace: options.redis.nameSpace }
      : { store: ClusterCounterStore as never }),
  });
  const limit = app.rateLimit({
    max: options.perMinute,
    timeWindow: 60_000,
    // Per tenant (every token of it shares the limit), per token for one with no tenant, else per client address.
    keyGenerator: (request) => limitKey(viewerOf(request), request.ip),
    onExceeded: () => options.onRefused?.(),
    errorResponseBuilder: (request, context) =>
      new FilesError(
        'ERR_WEFT_FILES_RATE_LIMITED',
        `Too many uploads ${describeKey(limitKey(viewerOf(request), request.ip))}: ${context.max} a minute. Try again in ${context.after}`,
      ),
  });
  return async (request, reply) => {
    try {
      await limit.call(app, request, reply);
    } catch (err) {
      if (err instanceof FilesError) throw err;
      // The store could not answer (Redis away, the supervisor gone): the upload goes on; said once a minute.
      errors.failure(
        'rate-limit',
        err,
        'the upload rate limit could not be checked; uploads are let through',
      );
      return;
    }
    errors.recovered('rate-limit', 'the upload rate limit is checked again');
  };
}
