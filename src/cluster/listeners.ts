import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Server } from 'node:net';

/** A libuv listening handle, as node:cluster's primary keeps it. */
interface ListenHandle {
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
      if (handle) this.#handles.add(handle);
    });
    // Registered before node:cluster's own listener, so this runs before the error is passed to the workers.
    server.once('error', (err) => this.#onError?.(err as ListenError));
  };
  readonly #onError: ((err: ListenError) => void) | undefined;

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

  /** Stops watching for new listening sockets. */
  dispose(): void {
    unsubscribe(LISTEN, this.#onListen);
  }
}
