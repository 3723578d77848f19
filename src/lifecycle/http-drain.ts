import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2Session } from 'node:http2';
import { Server as NetServer, type Socket } from 'node:net';

/** Options of `life.addServer`. */
export interface ServerOptions {
  /** Ms to keep accepting after readiness turns 503, so load balancers notice first (Kubernetes preStop). */
  drainDelay?: number;
  /**
   * A keep-alive socket is closed during drain only once it has been idle this long, so that no request can be on
   * the wire when it closes (closing it earlier is what makes clients see resets). Default: the server's
   * `keepAliveTimeout` (Node's default 5 000 ms), at most 5 000 ms: clients that honour the `Keep-Alive: timeout=`
   * hint Node sends (node:http's Agent, undici) close an idle socket a second before that, so none of them can race
   * the close. A drain with idle keep-alive connections lasts that long at most; a lower value ends it sooner, at
   * the risk of a reset for a client that reuses an idle connection at the very moment it is closed.
   */
  idleGrace?: number;
  /** Called for each upgraded socket (WebSocket) at drain: close it politely. Default: `socket.end()`. */
  closeUpgraded?: (socket: Socket, request: IncomingMessage) => void | Promise<void>;
  /**
   * Ms a connection closed during drain stays open for reading after the server's FIN, so that a request the client
   * sent anyway (after `Connection: close`, as autocannon does) is read and dropped instead of answered with a TCP
   * reset; the connection ends as soon as the client closes its side. nginx's `lingering_close`. Default: 5 000.
   */
  lingerTimeout?: number;
}

/** Any server Weft can drain: node:http, node:https, node:http2 (also what fastify and express expose). */
export type DrainableServer = NetServer;

/** The longest default `idleGrace`: Node's default `keepAliveTimeout`. */
const MAX_DEFAULT_IDLE_GRACE = 5_000;

interface SocketState {
  /** Requests on this socket whose responses are not finished. */
  active: number;
  /** The server has closed its side (FIN) during drain: any request read from now on is dropped, unanswered. */
  lingering: boolean;
  /** `performance.now()` when the last response finished (or the socket connected). */
  idleSince: number;
  responses: Set<ServerResponse>;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Drains one server without losing accepted requests or resetting connections. Internal; used by Lifecycle.
 *
 * Why not `server.close()` plus `closeIdleConnections()`: an "idle" keep-alive socket may have the client's next
 * request on the wire, and destroying it resets that request (what http-terminator does). Instead every response
 * written during drain carries `Connection: close`, and a socket idle at drain is closed only once it has been idle
 * for `idleGrace`. Either way the server closes with a FIN and keeps reading ("lingering close", as nginx does):
 * closing a socket with unread input makes the kernel send a reset, which a client that wrote one more request
 * (autocannon does, ignoring `Connection: close`) reports as an error.
 *
 * The drain ends when every connection it tracks has closed, counted by the sockets' own `close` events: in a
 * node:cluster worker `net.Server#close`'s callback comes while connections are still open.
 */
export class HttpDrain {
  readonly server: DrainableServer;
  drainDelay = 0;
  #idleGrace: number;
  #closeUpgraded: ServerOptions['closeUpgraded'];
  #lingerTimeout = 5_000;
  readonly #sockets = new Map<Socket, SocketState>();
  readonly #sessions = new Set<Http2Session>();
  readonly #upgraded = new Map<Socket, IncomingMessage>();
  readonly #http2: boolean;
  #draining = false;
  #closed: Promise<void> | undefined;
  /** Resolves the promise `drain()` waits on once the last connection has closed. */
  #onEmpty: (() => void) | undefined;
  /** The application's request listeners while draining: a late request on a lingering socket never reaches them. */
  #appListeners: ((...args: unknown[]) => void)[] = [];
  readonly #dispatch = (req: IncomingMessage, res: ServerResponse) => {
    const state = this.#sockets.get(req.socket);
    if (state?.lingering) return; // sent after the server closed its side: no one will read an answer
    for (const listener of this.#appListeners) listener.call(this.server, req, res);
  };
  readonly #onConnection = (socket: Socket) => this.#track(socket);
  readonly #onRequest = (req: IncomingMessage, res: ServerResponse) => this.#request(req, res);
  readonly #onSession = (session: Http2Session) => this.#session(session);
  readonly #onUpgrade = (req: IncomingMessage, socket: Socket) => this.#upgrade(req, socket);

  constructor(server: DrainableServer, options: ServerOptions = {}) {
    this.server = server;
    const keepAlive = (server as { keepAliveTimeout?: unknown }).keepAliveTimeout;
    this.#idleGrace =
      typeof keepAlive === 'number' && keepAlive > 0
        ? Math.min(keepAlive, MAX_DEFAULT_IDLE_GRACE)
        : MAX_DEFAULT_IDLE_GRACE;
    this.configure(options);
    // A cleartext HTTP/2 server speaks only HTTP/2; a secure one may also speak HTTP/1 (allowHTTP1), per socket.
    this.#http2 = server.constructor.name === 'Http2Server';
    // TLS servers hand requests the TLS socket, announced by 'secureConnection', not the raw 'connection'.
    server.on(isTlsServer(server) ? 'secureConnection' : 'connection', this.#onConnection);
    // Ahead of the application's handler, so a response it writes at once still gets `Connection: close`.
    server.prependListener('request', this.#onRequest);
    server.on('session', this.#onSession);
    server.on('upgrade', this.#onUpgrade);
  }

  /** Sets the options given; those left out keep their values. */
  configure(options: ServerOptions): void {
    if (options.drainDelay !== undefined) this.drainDelay = options.drainDelay;
    if (options.idleGrace !== undefined) this.#idleGrace = options.idleGrace;
    if (options.closeUpgraded !== undefined) this.#closeUpgraded = options.closeUpgraded;
    if (options.lingerTimeout !== undefined) this.#lingerTimeout = options.lingerTimeout;
  }

  /** Open connections (HTTP/1 sockets, HTTP/2 sessions, upgraded sockets). */
  get connections(): number {
    return this.#sockets.size + this.#sessions.size + this.#upgraded.size;
  }

  #track(socket: Socket): void {
    if (this.#sockets.has(socket)) return;
    // HTTP/2 connections are drained through their sessions (GOAWAY), not as keep-alive sockets.
    if (this.#http2 || (socket as Socket & { alpnProtocol?: string | false }).alpnProtocol === 'h2') return;
    const state: SocketState = {
      active: 0,
      lingering: false,
      idleSince: performance.now(),
      responses: new Set(),
      timer: undefined,
    };
    this.#sockets.set(socket, state);
    socket.once('close', () => {
      clearTimeout(state.timer);
      this.#sockets.delete(socket);
      this.#checkEmpty();
    });
    // Node's HTTP server closes a connection after its last response with `destroySoon()`: during drain, linger.
    const closable = socket as Socket & { destroySoon(): void };
    const destroySoon = closable.destroySoon;
    closable.destroySoon = () => (this.#draining ? this.#linger(socket, state) : destroySoon.call(socket));
    if (this.#draining) this.#scheduleIdleClose(socket, state);
  }

  #request(req: IncomingMessage, res: ServerResponse): void {
    // HTTP/2 compatibility requests have no keep-alive socket of their own; the session is drained instead.
    if ((req as { stream?: unknown }).stream !== undefined) return;
    const socket = req.socket;
    this.#track(socket);
    const state = this.#sockets.get(socket)!;
    clearTimeout(state.timer);
    state.timer = undefined;
    state.active++;
    state.responses.add(res);
    if (this.#draining) closeAfter(res);
    res.once('close', () => {
      state.active--;
      state.responses.delete(res);
      state.idleSince = performance.now();
      if (this.#draining) this.#scheduleIdleClose(socket, state);
    });
  }

  #session(session: Http2Session): void {
    this.#sessions.add(session);
    session.once('close', () => {
      this.#sessions.delete(session);
      this.#checkEmpty();
    });
    if (this.#draining) session.close();
  }

  #upgrade(req: IncomingMessage, socket: Socket): void {
    // An upgraded socket is no longer HTTP: it leaves the keep-alive bookkeeping.
    const state = this.#sockets.get(socket);
    if (state) clearTimeout(state.timer);
    this.#sockets.delete(socket);
    this.#upgraded.set(socket, req);
    socket.once('close', () => {
      this.#upgraded.delete(socket);
      this.#checkEmpty();
    });
    if (this.#draining) this.#closeOneUpgraded(socket, req);
  }

  /** Stops accepting connections. Existing ones keep being served. */
  stopAccepting(): void {
    if (this.#closed) return;
    // net.Server#close only stops the listener; http.Server#close would also destroy idle keep-alive sockets at
    // once (Node >= 19), the race that resets requests already on the wire.
    this.#closed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      NetServer.prototype.close.call(this.server, () => resolve());
    });
  }

  /** Drains: resolves once every connection is closed. Accepted requests complete. */
  async drain(): Promise<void> {
    this.stopAccepting();
    if (!this.#draining) this.#guardListeners();
    this.#draining = true;
    const empty = new Promise<void>((resolve) => {
      this.#onEmpty = resolve;
    });
    this.#checkEmpty();
    for (const [socket, state] of this.#sockets) {
      for (const res of state.responses) closeAfter(res);
      if (state.active === 0) this.#scheduleIdleClose(socket, state);
    }
    for (const session of this.#sessions) session.close();
    await Promise.all([...this.#upgraded].map(([socket, req]) => this.#closeOneUpgraded(socket, req)));
    await this.#closed;
    await empty;
  }

  #checkEmpty(): void {
    if (this.#onEmpty && this.connections === 0) this.#onEmpty();
  }

  /** From now on the application's request listeners run only for requests that will get an answer. */
  #guardListeners(): void {
    this.#appListeners = this.server.listeners('request').filter((l) => l !== this.#onRequest) as ((
      ...args: unknown[]
    ) => void)[];
    for (const listener of this.#appListeners) this.server.off('request', listener);
    this.server.on('request', this.#dispatch);
  }

  /** Closes the server's side and reads on until the client closes its own, or `lingerTimeout`. */
  #linger(socket: Socket, state: SocketState): void {
    if (state.lingering) return;
    state.lingering = true;
    clearTimeout(state.timer);
    socket.once('end', () => socket.destroy());
    socket.end();
    socket.resume();
    state.timer = setTimeout(() => socket.destroy(), this.#lingerTimeout);
    state.timer.unref();
  }

  /** The deadline passed: destroy everything left. */
  destroy(): void {
    for (const socket of [...this.#sockets.keys(), ...this.#upgraded.keys()]) socket.destroy();
    for (const session of this.#sessions) session.destroy();
  }

  /** Removes Weft's listeners from the server. */
  detach(): void {
    const server = this.server;
    if (drains.get(server) === this) drains.delete(server);
    server.off('secureConnection', this.#onConnection);
    server.off('connection', this.#onConnection);
    server.off('request', this.#onRequest);
    server.off('session', this.#onSession);
    server.off('upgrade', this.#onUpgrade);
    if (server.listeners('request').includes(this.#dispatch)) {
      server.off('request', this.#dispatch);
      for (const listener of this.#appListeners) server.on('request', listener);
    }
    for (const state of this.#sockets.values()) clearTimeout(state.timer);
  }

  #scheduleIdleClose(socket: Socket, state: SocketState): void {
    if (state.active > 0) return;
    clearTimeout(state.timer);
    const wait = state.idleSince + this.#idleGrace - performance.now();
    if (wait <= 0) {
      this.#linger(socket, state);
      return;
    }
    state.timer = setTimeout(() => {
      if (state.active === 0) this.#linger(socket, state);
    }, wait);
    state.timer.unref();
  }

  async #closeOneUpgraded(socket: Socket, req: IncomingMessage): Promise<void> {
    try {
      if (this.#closeUpgraded) await this.#closeUpgraded(socket, req);
      else socket.end();
    } catch {
      socket.destroy();
    }
  }
}

/**
 * A TLS server (node:tls, node:https, a secure node:http2 server), told by its `setSecureContext` method rather than
 * `instanceof tls.Server`: importing node:tls (and its crypto) costs every supervised worker ~30 ms at start, and a
 * server that is one has loaded it anyway.
 */
function isTlsServer(server: DrainableServer): boolean {
  return typeof (server as { setSecureContext?: unknown }).setSecureContext === 'function';
}

/** One drain per server, whoever asks: every lifecycle that adds it and the cluster agent share its bookkeeping. */
const drains = new WeakMap<DrainableServer, HttpDrain>();

/** The drain of `server`, made on first use; `options` given later are applied to it. Internal. */
export function serverDrain(server: DrainableServer, options: ServerOptions = {}): HttpDrain {
  const existing = drains.get(server);
  if (existing) {
    existing.configure(options);
    return existing;
  }
  const drain = new HttpDrain(server, options);
  drains.set(server, drain);
  return drain;
}

/** Makes this response the last on its connection: `Connection: close` if its headers are not sent yet. */
function closeAfter(res: ServerResponse): void {
  if (res.headersSent) return;
  res.shouldKeepAlive = false;
  res.setHeader('connection', 'close');
}
