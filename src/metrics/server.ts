import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidOptionError } from '../errors.ts';

/** What {@link serveMetrics} serves: a `Metrics` instance, or the supervisor's merged view of its workers. */
export interface MetricsSource {
  /** Prometheus text exposition, for `GET /metrics`. */
  metrics(): Promise<string>;
  /** A JSON-serialisable snapshot, for `GET /metrics.json` (`light` for `/metrics.json?light`: see the source). */
  snapshot(options?: { light?: boolean }): unknown;
  /** Content-Type of `metrics()`. Default: Prometheus text 0.0.4. */
  readonly contentType?: string;
}

/** Options of {@link serveMetrics}. */
export interface ServeMetricsOptions {
  /** TCP port; 0 picks a free one (see `port` of the result). */
  port: number;
  /** Interface to listen on. Default: `'127.0.0.1'` (loopback only: metrics can reveal more than you think). */
  host?: string;
  /**
   * Other routes on the same port (the supervisor's dashboard), tried before the metrics paths: returns true when
   * it answered the request.
   */
  handler?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

/** A listening metrics endpoint. */
export interface MetricsServer {
  readonly host: string;
  readonly port: number;
  /** `http://host:port/metrics`. */
  readonly url: string;
  /** Stops listening and ends open connections. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const TEXT = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * Serves `GET /metrics` (Prometheus text) and `GET /metrics.json` (the JSON snapshot) from `source`. Anything else
 * is 404 (405 for methods other than GET and HEAD); a source that throws answers 500 and the server carries on.
 * Rejects with the listen error (such as `EADDRINUSE`), or `ERR_WEFT_INVALID_OPTION` for a bad port or host.
 *
 * @example
 * ```ts
 * import { createMetrics, serveMetrics } from 'weftjs/metrics';
 * const metrics = createMetrics();
 * const server = await serveMetrics(metrics, { port: 9464 });
 * // ... later
 * await server.close();
 * ```
 */
export async function serveMetrics(
  source: MetricsSource,
  options: ServeMetricsOptions,
): Promise<MetricsServer> {
  if (typeof source?.metrics !== 'function' || typeof source.snapshot !== 'function')
    throw new InvalidOptionError('source', 'an object with metrics() and snapshot()', source);
  if (typeof options !== 'object' || options === null)
    throw new InvalidOptionError('options', 'an object', options);
  const { port, host = '127.0.0.1', handler } = options;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65_535)
    throw new InvalidOptionError('port', 'an integer from 0 to 65535', port);
  if (typeof host !== 'string' || host.length === 0)
    throw new InvalidOptionError('host', 'a host name or IP address', host);
  if (handler !== undefined && typeof handler !== 'function')
    throw new InvalidOptionError('handler', 'a function', handler);

  const server = createServer((req, res) => {
    if (!handler?.(req, res)) void answer(source, req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port: bound,
    url: `http://${shown}:${bound}/metrics`,
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function answer(source: MetricsSource, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics' && path !== '/metrics.json') return end(res, 404, 'not found: try /metrics\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return end(res, 405, 'method not allowed\n');
  }
  try {
    if (path === '/metrics') {
      const text = await source.metrics();
      res.setHeader('content-type', source.contentType ?? TEXT);
      end(res, 200, text);
    } else {
      const light = new URLSearchParams((req.url ?? '').split('?')[1]).has('light');
      const json = JSON.stringify(await source.snapshot(light ? { light } : undefined));
      res.setHeader('content-type', 'application/json; charset=utf-8');
      end(res, 200, json);
    }
  } catch (err) {
    end(res, 500, `metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

function end(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.statusCode = status;
  if (!res.hasHeader('content-type')) res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
