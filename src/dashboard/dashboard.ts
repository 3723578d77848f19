import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidOptionError } from '../errors.ts';
import { loadAssets, pageCsp, sendAsset } from './assets.ts';
import { SnapshotFeed } from './feed.ts';
import type { DashboardSnapshot } from './view.ts';

/** Options of {@link createDashboard}. Validated once. */
export interface DashboardOptions {
  /** Makes one snapshot of what the page shows; called at most once per `intervalMs`, only while a page is open. */
  snapshot: () => DashboardSnapshot | Promise<DashboardSnapshot>;
  /** Ms between snapshots; at least 1 000 (the page never needs more than one a second). Default: 1 000. */
  intervalMs?: number;
  /** Ms of silence after which a stream gets a comment line, so proxies keep it open. Default: 15 000. */
  heartbeatMs?: number;
  /** Ms the browser waits before it reconnects a dropped stream (the SSE `retry:` field). Default: 1 000. */
  retryMs?: number;
  /**
   * What one viewer may see of a snapshot, from its request (who it is: a token, a tenant): applied to each stream
   * and `snapshot.json` separately, while the snapshot itself is still made once per tick. Default: everything.
   *
   * @example
   * ```ts
   * view: (snap, req) => (isAdmin(req) ? snap : { ...snap, events: snap.events.filter((e) => mine(req, e)) }),
   * ```
   */
  view?: (snapshot: DashboardSnapshot, req: IncomingMessage) => DashboardSnapshot;
  /** Called when the first page opens (start what only the dashboard needs) and when the last one closes. */
  onActive?: () => void;
  onIdle?: () => void;
  /**
   * Origins (`https://host[:port]`) the page may show images from besides its own: where an application serves
   * thumbnails from a separate content origin. Default: none.
   */
  imageOrigins?: readonly string[];
}

/** A dashboard: the page and its event stream, for any node:http server (or fastify's `reply.raw`). */
export interface Dashboard {
  /**
   * Answers the dashboard's paths: `/` (the page), `/dashboard/*` (its script, style and icon),
   * `/dashboard/events` (the SSE stream), `/dashboard/snapshot.json` (the latest snapshot). False for any other
   * path, which the caller answers.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Open event streams. */
  readonly clients: number;
  /** Ends every stream and refuses new ones (call it when the server starts draining). Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The paths {@link Dashboard.handle} answers, for routers that register them one by one (fastify). */
export const DASHBOARD_PATHS: readonly string[] = [
  '/',
  '/dashboard',
  '/dashboard/',
  '/dashboard/dashboard.js',
  '/dashboard/util.js',
  '/dashboard/dashboard.css',
  '/dashboard/icon.svg',
  '/dashboard/events',
  '/dashboard/snapshot.json',
];

function ms(
  options: DashboardOptions,
  key: 'intervalMs' | 'heartbeatMs' | 'retryMs',
  def: number,
  min: number,
) {
  const v = options[key] ?? def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min)
    throw new InvalidOptionError(key, `a number of ms >= ${min}`, v);
  return v;
}

/** Each must be a bare http(s) origin: it goes into the page's CSP, where anything else could widen it. */
function imageOrigins(value: unknown): string[] {
  if (value === undefined) return [];
  const ok = (o: unknown) =>
    typeof o === 'string' && URL.canParse(o) && new URL(o).origin === o && /^https?:/.test(o);
  if (!Array.isArray(value) || !value.every(ok))
    throw new InvalidOptionError('imageOrigins', 'an array of origins like https://cdn.example.com', value);
  return [...value] as string[];
}

/**
 * Creates the live dashboard. The snapshot is made once per tick and shared by every open page; nothing runs while
 * no page is open.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http';
 * import { createDashboard, processView } from 'weftjs/dashboard';
 * const dashboard = createDashboard({ snapshot: () => processView('my service') });
 * const server = createServer((req, res) => dashboard.handle(req, res) || res.writeHead(404).end());
 * server.listen(8080);
 * // on shutdown: await dashboard.close(); server.close();
 * ```
 */
export function createDashboard(options: DashboardOptions): Dashboard {
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  if (typeof options.snapshot !== 'function')
    throw new InvalidOptionError('snapshot', 'a function', options.snapshot);
  for (const key of ['onActive', 'onIdle', 'view'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'function')
      throw new InvalidOptionError(key, 'a function', options[key]);
  }
  const feed = new SnapshotFeed({
    snapshot: options.snapshot,
    intervalMs: ms(options, 'intervalMs', 1_000, 1_000),
    heartbeatMs: ms(options, 'heartbeatMs', 15_000, 1_000),
    retryMs: ms(options, 'retryMs', 1_000, 100),
    onActive: options.onActive,
    onIdle: options.onIdle,
    view: options.view as ((snapshot: unknown, req: IncomingMessage) => unknown) | undefined,
  });
  const assets = loadAssets();
  const csp = pageCsp(imageOrigins(options.imageOrigins));
  const close = () => feed.close();
  return {
    handle(req, res) {
      let path = (req.url ?? '/').split('?')[0] ?? '/';
      if (path === '/dashboard' || path === '/dashboard/') path = '/';
      const asset = assets.get(path);
      if (!asset && path !== '/dashboard/events' && path !== '/dashboard/snapshot.json') return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
        res.end('method not allowed\n');
      } else if (asset) sendAsset(asset, req, res, csp);
      else if (path === '/dashboard/events') feed.attach(req, res);
      else void snapshotJson(feed, req, res);
      return true;
    },
    get clients() {
      return feed.clients;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function snapshotJson(feed: SnapshotFeed, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { ok, json } = await feed.current(req);
  res.writeHead(ok ? 200 : 500, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(json);
}
