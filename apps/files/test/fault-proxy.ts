/**
 * A TCP proxy a test puts between the service and one backend (Redis, PostgreSQL, an S3 server) to fail it on
 * demand, so the machine's own services are never stopped, paused or disconnected for everyone:
 *
 * - `pass` forwards both ways.
 * - `cut` closes every connection (FIN) and ends new ones as soon as they are accepted: a backend that went away.
 * - `blackhole` forwards nothing in either direction, on existing connections and on new ones (accepted, and held
 *   without reaching the backend): a network partition. The bytes are not dropped but held, as TCP holds them across
 *   a partition, so a connection that outlives it goes on in sync once the proxy passes again.
 * - `slow` delays each chunk by `delayMs` (in order): a congested link or a backend on its knees.
 * - `reset` destroys every connection with a TCP RST (`socket.resetAndDestroy()`), new ones included: a crashed host
 *   or a firewall rejecting.
 *
 * Forwarding pulls from each socket (async iteration) only while the mode lets bytes through, so a held direction
 * stops reading and TCP's own flow control pushes back on the sender, as on a real link.
 */
import { once } from 'node:events';
import { createServer, type Server, Socket } from 'node:net';

export type FaultMode = 'pass' | 'cut' | 'blackhole' | 'slow' | 'reset';

export interface FaultProxy {
  /** The loopback port to give the service instead of the backend's. */
  readonly port: number;
  readonly mode: FaultMode;
  /** Connections currently open through the proxy (accepted and not yet closed). */
  readonly connections: number;
  /** Switches mode; `delayMs` is the per-chunk delay of `slow` (default 100 ms). */
  set(mode: FaultMode, options?: { delayMs?: number }): void;
  /** Destroys every connection and stops listening; idempotent. */
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket | undefined;
}

/**
 * @example
 * ```ts
 * const p = await faultProxy({ target: { host: '127.0.0.1', port: 6379 } });
 * const service = await startService({ queueUrl: `redis://127.0.0.1:${p.port}` });
 * p.set('blackhole'); // ... the service meets a silent Redis ...
 * p.set('pass');
 * await p.close();
 * ```
 */
export async function faultProxy(options: { target: { host: string; port: number } }): Promise<FaultProxy> {
  const { host, port: targetPort } = options.target;
  let mode: FaultMode = 'pass';
  let delayMs = 100;
  let closed = false;
  const pairs = new Set<Pair>();
  // Resolved (and replaced) whenever the mode changes: whatever waits for bytes to flow again re-checks then.
  let changed = Promise.withResolvers<void>();

  const flowing = () => mode === 'pass' || mode === 'slow';
  /** Resolves true once bytes may flow, false when the pair must end (cut, reset, closed). */
  const gate = async (): Promise<boolean> => {
    for (;;) {
      if (closed) return false;
      if (flowing()) return true;
      if (mode !== 'blackhole') return false;
      await changed.promise;
    }
  };

  const kill = (pair: Pair, how: 'end' | 'reset') => {
    pairs.delete(pair);
    for (const s of [pair.client, pair.upstream]) {
      if (!s || s.destroyed) continue;
      if (how === 'reset') s.resetAndDestroy();
      else s.destroy();
    }
  };
  /** Forgets a pair once both of its sockets closed by themselves (each side ended its half). */
  const settle = (pair: Pair) => {
    if (pair.client.destroyed && (!pair.upstream || pair.upstream.destroyed)) pairs.delete(pair);
  };

  const pump = async (from: Socket, to: Socket) => {
    try {
      // Not destroyed when the loop ends: the other direction may still be flowing (a half-closed connection).
      for await (const chunk of from.iterator({ destroyOnReturn: false })) {
        if (!(await gate())) return;
        if (mode === 'slow') {
          await new Promise((r) => setTimeout(r, delayMs));
          if (!(await gate())) return;
        }
        if (to.destroyed) return;
        if (!to.write(chunk as Buffer)) await Promise.race([once(to, 'drain'), once(to, 'close')]);
      }
      // The sender finished: pass its FIN on once the mode lets bytes through.
      if (await gate()) to.end();
    } catch {
      // `from` failed (reset, or destroyed by a cut): its error handler ends the pair.
    }
  };

  const connect = async (pair: Pair) => {
    if (!(await gate())) return kill(pair, mode === 'reset' ? 'reset' : 'end');
    if (pair.client.destroyed) return;
    const upstream = new Socket({ allowHalfOpen: true });
    pair.upstream = upstream;
    upstream.on('error', () => kill(pair, 'end'));
    upstream.on('close', () => settle(pair));
    upstream.connect(targetPort, host, () => {
      void pump(pair.client, upstream);
      void pump(upstream, pair.client);
    });
  };

  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    if (closed || mode === 'reset') return void client.resetAndDestroy();
    if (mode === 'cut') return void client.destroy();
    const pair: Pair = { client, upstream: undefined };
    pairs.add(pair);
    client.on('error', () => kill(pair, 'end'));
    client.on('close', () => settle(pair));
    void connect(pair);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });

  return {
    port: (server.address() as { port: number }).port,
    get mode() {
      return mode;
    },
    get connections() {
      return pairs.size;
    },
    set(next, opts = {}) {
      if (closed) throw new Error('the fault proxy is closed');
      mode = next;
      if (opts.delayMs !== undefined) delayMs = opts.delayMs;
      if (next === 'cut' || next === 'reset') {
        for (const pair of [...pairs]) kill(pair, next === 'reset' ? 'reset' : 'end');
      }
      const was = changed;
      changed = Promise.withResolvers<void>();
      was.resolve();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const pair of [...pairs]) kill(pair, 'end');
      changed.resolve();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
