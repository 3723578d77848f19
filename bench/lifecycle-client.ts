/**
 * The load of the lifecycle benchmark: autocannon (programmatic API) with every client connection recorded, so a
 * request that got no response can be told apart: refused, reset by the server, or sent by the client after the
 * server had said `Connection: close`.
 *
 * Two client behaviours:
 * - `compliant`: autocannon made to follow RFC 9112 §9.6 (what Node's http Agent, undici and proxies do): after a
 *   response carrying `Connection: close` the client closes that connection and opens a new one for its next
 *   request, instead of writing the request to the connection the server is closing; a refused connection is
 *   retried after 10 ms instead of at once.
 * - `stock`: autocannon as it is. It ignores `Connection: close` and writes its next request on the same connection
 *   as soon as the response is read, so every graceful close by the server races a request the client should not
 *   have sent.
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

export type ClientMode = 'compliant' | 'stock';

/** One TCP connection opened by the load generator. */
export interface ConnRecord {
  client: number;
  /** Epoch ms when the connection was opened, connected, and when it ended (first event seen). */
  opened: number;
  connected?: number;
  localPort?: number;
  sent: number;
  received: number;
  /** The server's last response on this connection said `Connection: close`. */
  closeAnnounced: boolean;
  /** How it ended, first event: an error code, `end` (server's FIN), `client-close` (after `Connection: close`), `timeout`, `load-stopped`. */
  how?: string;
  ended?: number;
  /** Every event after the first, for diagnostics. */
  later: string[];
}

/** The parts of autocannon's per-connection client this module hooks. */
interface AcClient extends EventEmitter {
  conn: Socket;
  destroyed: boolean;
  parser: { initialize(type: string): void };
  pipelinedRequests: { clear(): void };
  _connect(): void;
  _doRequest(): void;
  _resetConnection(): void;
  _destroyConnection(): void;
}

export interface AcResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
  '2xx': number;
  totalRequests: number;
  totalCompletedRequests: number;
}

interface AcTracker extends EventEmitter {
  stop(): void;
}

interface AcOptions {
  url: string;
  connections: number;
  duration: number;
  pipelining: number;
  timeout: number;
  sampleInt: number;
  setupClient: (client: AcClient) => void;
}

const require = createRequire(import.meta.url);
const autocannon = require('autocannon') as (
  opts: AcOptions,
  cb: (err: Error | null, result: AcResult) => void,
) => AcTracker;

const epoch = () => performance.timeOrigin + performance.now();

export interface LoadOptions {
  url: string;
  connections: number;
  /** Upper bound on the load; it normally ends earlier with `stop()`. */
  maxSeconds: number;
  mode: ClientMode;
  /** Client i opens its first connection i × this many ms after the start, so the connections are not in step. */
  stagger: number;
}

export interface Load {
  readonly conns: ConnRecord[];
  /** Epoch ms when the load started. */
  readonly started: number;
  /** Stops the load (idempotent) and resolves with autocannon's result. */
  stop(): Promise<AcResult>;
}

/** Starts the load at once. */
export function startLoad(options: LoadOptions): Load {
  const conns: ConnRecord[] = [];
  const records = new WeakMap<Socket, ConnRecord>();
  let nextClient = 0;
  const compliant = options.mode === 'compliant';

  const setupClient = (client: AcClient) => {
    const index = nextClient++;
    const recordOf = (conn: Socket): ConnRecord => {
      let r = records.get(conn);
      if (!r) {
        r = { client: index, opened: epoch(), sent: 0, received: 0, closeAnnounced: false, later: [] };
        records.set(conn, r);
        conns.push(r);
      }
      return r;
    };
    const end = (r: ConnRecord, how: string) => {
      if (r.how === undefined) {
        r.how = how;
        r.ended = epoch();
      } else r.later.push(how);
    };
    let destroyReason: string | undefined;
    let pending = false;

    const connect = client._connect.bind(client);
    client._connect = () => {
      if (pending) return;
      const previous = client.conn ? records.get(client.conn) : undefined;
      const open = () => {
        pending = false;
        if (client.destroyed) return;
        if (compliant) {
          // A new connection starts a new response stream: drop what a broken one left half parsed.
          client.parser.initialize('RESPONSE');
          client.pipelinedRequests.clear();
        }
        connect(); // creates client.conn and writes the first request (counted by _doRequest below)
        const conn = client.conn;
        const r = recordOf(conn);
        conn.once('connect', () => {
          r.connected = epoch();
          r.localPort = conn.localPort;
        });
        // Ahead of autocannon's own listeners, which reconnect at once: the next connection must see this end.
        conn.prependListener('error', (err: NodeJS.ErrnoException) => end(r, err.code ?? err.message));
        conn.prependListener('end', () => end(r, 'end'));
      };
      const wait = !client.conn
        ? index * options.stagger
        : compliant && previous && previous.connected === undefined && previous.how !== undefined
          ? 10
          : 0;
      if (wait > 0) {
        pending = true;
        setTimeout(open, wait);
      } else open();
    };

    const doRequest = client._doRequest.bind(client);
    client._doRequest = () => {
      const r = recordOf(client.conn);
      if (compliant && r.closeAnnounced && !client.destroyed) {
        destroyReason = 'client-close';
        client._resetConnection();
        return;
      }
      if (!client.destroyed) r.sent++;
      doRequest();
    };

    const destroyConnection = client._destroyConnection.bind(client);
    client._destroyConnection = () => {
      if (client.conn)
        end(recordOf(client.conn), destroyReason ?? (client.destroyed ? 'load-stopped' : 'timeout'));
      destroyReason = undefined;
      destroyConnection();
    };

    client.on('headers', (info: { shouldKeepAlive?: boolean }) => {
      if (info.shouldKeepAlive === false) recordOf(client.conn).closeAnnounced = true;
    });
    client.on('response', () => {
      recordOf(client.conn).received++;
    });
  };

  let result: Promise<AcResult> | undefined;
  let resolveResult!: (r: AcResult) => void;
  let rejectResult!: (e: Error) => void;
  const done = new Promise<AcResult>((resolve, reject) => {
    resolveResult = resolve;
    rejectResult = reject;
  });
  const tracker = autocannon(
    {
      url: options.url,
      connections: options.connections,
      duration: options.maxSeconds,
      pipelining: 1,
      timeout: 10,
      // autocannon looks at a stop request once per sample interval: keep it short so stop() acts quickly.
      sampleInt: 100,
      setupClient,
    },
    (err, res) => (err ? rejectResult(err) : resolveResult(res)),
  );
  return {
    conns,
    started: epoch(),
    stop() {
      if (!result) {
        tracker.stop();
        result = done;
      }
      return result;
    },
  };
}
