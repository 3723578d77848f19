import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Server } from 'node:net';
import { performance } from 'node:perf_hooks';
import { twoTurns } from './words.ts';

/** A libuv listening handle, as node:cluster's primary keeps it. */
interface ListenHandle {
  close(callback?: () => void): void;
  /** Called by libuv with each accepted connection; node:cluster's round-robin handle sets it. */
  onconnection?: (err: number, connection: ConnectionHandle | undefined) => void;
}

/** An accepted connection's libuv handle, before it is handed to a worker. */
interface ConnectionHandle {
  close(callback?: () => void): void;
}

const LISTEN = 'tracing:net.server.listen:asyncStart';

/** Why a listening socket could not be opened: `EADDRINUSE`, `EACCES`…, with the address and port asked for. */
export interface ListenError extends NodeJS.ErrnoException {
  address?: string;
  port?: number;
}

/**
 * The listening sockets node:cluster's primary opens for round-robin scheduling, so that a stop can close them first.
 * Internal.
 *
 * Why: the primary closes a listening socket only when the last worker has closed its server. Every connection the
 * kernel or the primary accepted by then but no worker took (the accept queue, connections handed to a worker that
 * had just stopped accepting) is closed with a reset, often after the client sent its request. Closing the
 * listening sockets before the workers drain turns those into refused connections (nothing listens), and the
 * connections already accepted are still handed to workers that accept them.
 *
 * node:cluster does not expose these handles. Its RoundRobinHandle listens through `net.createServer(assert.fail)`
 * and takes the server's handle in a `listening` listener registered after `listen()`: a listener added when
 * `listen()` publishes on the tracing channel runs first and sees the same handle.
 */
export class PrimaryListeners {
  readonly #handles = new Set<ListenHandle>();
  readonly #onListen = (message: unknown) => {
    const server = (message as { server?: Server }).server;
    // Only node:cluster's round-robin servers: their one connection listener is node's internal assert.fail (no
    // connection ever comes to it), a function named `fail`.
    const listeners = server?.listeners('connection');
    if (!server || listeners?.length !== 1 || listeners[0]?.name !== 'fail') return;
    server.once('listening', () => {
      const handle = (server as unknown as { _handle?: ListenHandle })._handle;
      if (!handle) return;
      this.#handles.add(handle);
      // node:cluster sets the handle's onconnection in its own 'listening' listener, which runs after this one.
      process.nextTick(() => this.#watchAccepts(handle));
    });
    // Registered before node:cluster's own listener, so this runs before the error is passed to the workers.
    server.once('error', (err) => this.#onError?.(err as ListenError));
  };
  readonly #onError: ((err: ListenError) => void) | undefined;
  /** Connections accepted here that no worker has taken yet (queued, or on their way to one). */
  readonly #pending = new Set<ConnectionHandle>();
  #onHandedOver: (() => void) | undefined;
  /** Connections accepted so far. */
  #accepted = 0;

  /** `onError` hears a listening socket that could not be opened (a port in use), before any worker does. */
  constructor(onError?: (err: ListenError) => void) {
    this.#onError = onError;
    subscribe(LISTEN, this.#onListen);
  }

  /** How many listening sockets are held. */
  get size(): number {
    return this.#handles.size;
  }

  /** Closes every listening socket: from now on connections are refused; accepted ones still reach the workers. */
  closeAll(): void {
    // node:cluster closes each again when its last worker leaves; a second close of a handle does nothing.
    for (const handle of this.#handles) handle.close();
    this.#handles.clear();
  }

  /**
   * Lets the event loop turn until the listening sockets' accept queues are empty, or `maxMs`: closing a listening
   * socket resets every connection the kernel queued on it, whose clients may have sent their requests already. Node
   * accepts about one connection per turn of its loop, so a queue that grew while this process was held back (a busy
   * machine, a long collection, the stop signal's own wait) needs as many turns: they go on until two turns in a row
   * accept nothing.
   */
  async takeQueued(maxMs: number): Promise<void> {
    const deadline = performance.now() + maxMs;
    for (;;) {
      const before = this.#accepted;
      await twoTurns();
      if (this.#accepted === before || performance.now() >= deadline) return;
    }
  }

  /**
   * Resolves once every connection accepted so far has been taken by a worker (node:cluster closes its own handle of
   * a connection when a worker took it), or after `maxMs`. A worker that drains before the last one was handed over
   * leaves it to node:cluster, which resets it when the last worker leaves.
   */
  handedOver(maxMs: number): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#onHandedOver = undefined;
        resolve();
      };
      const timer = setTimeout(done, maxMs);
      this.#onHandedOver = done;
    });
  }

  /** Counts the connections node:cluster accepts on `handle` until each is handed over (or closed). */
  #watchAccepts(handle: ListenHandle): void {
    const distribute = handle.onconnection;
    if (typeof distribute !== 'function') return;
    handle.onconnection = (err, connection) => {
      if (connection) {
        this.#accepted++;
        this.#pending.add(connection);
        const close = connection.close;
        connection.close = (callback) => {
          this.#pending.delete(connection);
          if (this.#pending.size === 0) this.#onHandedOver?.();
          return close.call(connection, callback);
        };
      }
      return distribute.call(handle, err, connection);
    };
  }

  /** Stops watching for new listening sockets. */
  dispose(): void {
    unsubscribe(LISTEN, this.#onListen);
  }
}
