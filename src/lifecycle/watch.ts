import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Server as NetServer } from 'node:net';
import { type HttpDrain, serverDrain } from './http-drain.ts';

/** What `watchServers()` returns. */
export interface ServerWatch {
  /** The HTTP servers found so far. */
  readonly servers: readonly NetServer[];
  /** Open connections across them. */
  readonly connections: number;
  /**
   * Drains every server found, as `Lifecycle` does: stop accepting, `Connection: close` on the responses still to
   * come, idle keep-alive connections closed once idle, lingering close; resolves when every connection has closed.
   */
  drain(): Promise<void>;
  /** Destroys every connection left (after a deadline). */
  destroy(): void;
  /** Stops watching for new servers. */
  close(): void;
}

// Node publishes every `listen()` on this tracing channel (from 22.x); a server that listened before the watch began,
// or on a Node without the channel, is found at its first request instead.
const LISTEN = 'tracing:net.server.listen:asyncStart';
const REQUEST = 'http.server.request.start';

/**
 * node:http, node:https and node:http2 servers (fastify's and express's are node:http ones), told by their shape
 * rather than `instanceof`: the weft agent loads this into every worker before the application, and importing
 * node:https (node:tls, crypto) there cost each worker start ~30 ms.
 */
function isHttpServer(server: unknown): server is NetServer {
  if (typeof (server as { closeIdleConnections?: unknown } | null)?.closeIdleConnections === 'function')
    return true;
  const name = (server as { constructor?: { name?: string } } | null)?.constructor?.name;
  return name === 'Http2Server' || name === 'Http2SecureServer';
}

/**
 * Finds every node:http, https and http2 server the process listens on from now on, through `diagnostics_channel`
 * and without touching the application's code, so they can be drained at shutdown. The weft supervisor's agent uses
 * it to drain applications that have no Weft code at all.
 *
 * @example
 * ```ts
 * import { watchServers } from 'weftjs/lifecycle';
 * const watch = watchServers();               // before the application listens
 * process.once('SIGTERM', async () => {
 *   await watch.drain();                      // every accepted request answered, no connection reset
 *   process.exit(0);
 * });
 * ```
 */
export function watchServers(): ServerWatch {
  const drains = new Map<NetServer, HttpDrain>();
  let draining: Promise<void> | undefined;
  const add = (server: unknown) => {
    if (!isHttpServer(server) || drains.has(server)) return;
    const drain = serverDrain(server);
    drains.set(server, drain);
    if (draining) void drain.drain();
  };
  const onListen = (message: unknown) => add((message as { server?: unknown }).server);
  const onRequest = (message: unknown) => add((message as { server?: unknown }).server);
  subscribe(LISTEN, onListen);
  subscribe(REQUEST, onRequest);
  return {
    get servers() {
      return [...drains.keys()];
    },
    get connections() {
      let n = 0;
      for (const d of drains.values()) n += d.connections;
      return n;
    },
    drain() {
      draining ??= Promise.all([...drains.values()].map((d) => d.drain())).then(() => {});
      return draining;
    },
    destroy() {
      for (const d of drains.values()) d.destroy();
    },
    close() {
      unsubscribe(LISTEN, onListen);
      unsubscribe(REQUEST, onRequest);
    },
  };
}
