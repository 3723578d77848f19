import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2Session } from 'node:http2';
import { Server as NetServer, type Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';

/** Options of `life.addServer`. */
export interface ServerOptions {
  /** Ms to keep accepting after readiness turns 503, so load balancers notice first (Kubernetes preStop). */
  drainDelay?: number;
  /**
   * A keep-alive socket is closed during drain only once it has been idle this long, so that no request can be on
   * the wire when it closes (closing it earlier is what makes clients see resets). Default: 200 ms.
   */
  idleGrace?: number;
  /** Called for each upgraded socket (WebSocket) at drain: close it politely. Default: `socket.end()`. */
  closeUpgraded?: (socket: Socket, request: IncomingMessage) => void | Promise<void>;
}

/** Any server Weft can drain: node:http, node:https, node:http2 (also what fastify and express expose). */
export type DrainableServer = NetServer;

interface SocketState {
  /** Requests on this socket whose responses are not finished. */
  active: number;
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
 * written during drain carries `Connection: close` (Node then closes its socket after it), and a socket idle at
 * drain is closed only once it has been idle for `idleGrace`.
 */
export class HttpDrain {
  readonly server: DrainableServer;
  readonly drainDelay: number;
  readonly #idleGrace: number;
  readonly #closeUpgraded: ServerOptions['closeUpgraded'];
  readonly #sockets = new Map<Socket, SocketState>();
  readonly #sessions = new Set<Http2Session>();
  readonly #upgraded = new Map<Socket, IncomingMessage>();
  readonly #http2: boolean;
  #draining = false;
  #closed: Promise<void> | undefined;
  readonly #onConnection = (socket: Socket) => this.#track(socket);
  readonly #onRequest = (req: IncomingMessage, res: ServerResponse) => this.#request(req, res);
  readonly #onSession = (session: Http2Session) => this.#session(session);
  readonly #onUpgrade = (req: IncomingMessage, socket: Socket) => this.#upgrade(req, socket);

  constructor(server: DrainableServer, options: ServerOptions = {}) {
    this.server = server;
    this.drainDelay = options.drainDelay ?? 0;
    this.#idleGrace = options.idleGrace ?? 200;
    this.#closeUpgraded = options.closeUpgraded;
    // A cleartext HTTP/2 server speaks only HTTP/2; a secure one may also speak HTTP/1 (allowHTTP1), per socket.
    this.#http2 = server.constructor.name === 'Http2Server';
    // TLS servers hand requests the TLS socket, announced by 'secureConnection', not the raw 'connection'.
    server.on(server instanceof TlsServer ? 'secureConnection' : 'connection', this.#onConnection);
    // Ahead of the application's handler, so a response it writes at once still gets `Connection: close`.
    server.prependListener('request', this.#onRequest);
    server.on('session', this.#onSession);
    server.on('upgrade', this.#onUpgrade);
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
      idleSince: performance.now(),
      responses: new Set(),
      timer: undefined,
    };
    this.#sockets.set(socket, state);
    socket.once('close', () => {
      clearTimeout(state.timer);
      this.#sockets.delete(socket);
    });
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
    session.once('close', () => this.#sessions.delete(session));
    if (this.#draining) session.close();
  }

  #upgrade(req: IncomingMessage, socket: Socket): void {
    // An upgraded socket is no longer HTTP: it leaves the keep-alive bookkeeping.
    const state = this.#sockets.get(socket);
    if (state) clearTimeout(state.timer);
    this.#sockets.delete(socket);
    this.#upgraded.set(socket, req);
    socket.once('close', () => this.#upgraded.delete(socket));
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
    this.#draining = true;
    for (const [socket, state] of this.#sockets) {
      for (const res of state.responses) closeAfter(res);
      if (state.active === 0) this.#scheduleIdleClose(socket, state);
    }
    for (const session of this.#sessions) session.close();
    await Promise.all([...this.#upgraded].map(([socket, req]) => this.#closeOneUpgraded(socket, req)));
    await this.#closed;
  }

  /** The deadline passed: destroy everything left. */
  destroy(): void {
    for (const socket of [...this.#sockets.keys(), ...this.#upgraded.keys()]) socket.destroy();
    for (const session of this.#sessions) session.destroy();
  }

  /** Removes Weft's listeners from the server. */
  detach(): void {
    const server = this.server;
    server.off('secureConnection', this.#onConnection);
    server.off('connection', this.#onConnection);
    server.off('request', this.#onRequest);
    server.off('session', this.#onSession);
    server.off('upgrade', this.#onUpgrade);
    for (const state of this.#sockets.values()) clearTimeout(state.timer);
  }

  #scheduleIdleClose(socket: Socket, state: SocketState): void {
    if (state.active > 0) return;
    clearTimeout(state.timer);
    const wait = state.idleSince + this.#idleGrace - performance.now();
    if (wait <= 0) {
      socket.destroy();
      return;
    }
    state.timer = setTimeout(() => {
      if (state.active === 0) socket.destroy();
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

/** Makes this response the last on its connection: `Connection: close` if its headers are not sent yet. */
function closeAfter(res: ServerResponse): void {
  if (res.headersSent) return;
  res.shouldKeepAlive = false;
  res.setHeader('connection', 'close');
}
