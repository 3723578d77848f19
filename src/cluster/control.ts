import { chmodSync, lstatSync, mkdirSync, type Stats, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WeftError } from '../errors.ts';
import { statusWithMetrics } from './metrics.ts';
import type { Supervisor } from './supervisor.ts';

/** Commands of the control socket. */
export type ControlCommand = 'status' | 'reload' | 'stop' | 'logs';

/**
 * The directory of control sockets: `$WEFT_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/weft`, else `<tmp>/weft-<uid>`.
 * Created with mode 0700. One that another user owns, or that others can enter, is refused with
 * `ERR_WEFT_CONTROL_DENIED`: its sockets are not ours to serve or to trust.
 */
export function runtimeDir(): string {
  const uid = process.getuid?.() ?? 0;
  const dir =
    process.env.WEFT_RUNTIME_DIR ??
    (process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'weft') : join(tmpdir(), `weft-${uid}`));
  let st: Stats;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    st = lstatSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    throw new WeftError(
      'ERR_WEFT_CONTROL_DENIED',
      `Permission denied on the runtime directory ${dir}: it belongs to another user`,
      { cause: err },
    );
  }
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new WeftError(
      'ERR_WEFT_CONTROL_DENIED',
      `The runtime directory ${dir} must be a directory owned by uid ${uid} with mode 0700 (it is ${(st.mode & 0o777).toString(8)}, uid ${st.uid})`,
    );
  }
  return dir;
}

/** The control socket of the supervisor named `name`. */
export function socketPath(name: string): string {
  return join(runtimeDir(), `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.sock`);
}

/**
 * Serves `weft status | reload | stop | logs` on a Unix socket with mode 0600 (owner only). One JSON request line in,
 * JSON lines out. Internal; started by the CLI.
 */
export class ControlServer {
  readonly path: string;
  readonly #supervisor: Supervisor;
  readonly #server: Server;
  readonly #followers = new Set<Socket>();
  /** Clients of `weft stop`, answered with the exit code when the supervisor exits. */
  readonly #stopping = new Set<Socket>();
  readonly #clients = new Set<Socket>();

  constructor(supervisor: Supervisor, path: string) {
    this.path = path;
    this.#supervisor = supervisor;
    this.#server = createServer((socket) => this.#serve(socket));
    supervisor.on('log', (line: string) => {
      for (const s of this.#followers) s.write(`${JSON.stringify({ line })}\n`);
    });
    supervisor.on('exit', (code: number) => {
      for (const s of this.#stopping) s.end(`${JSON.stringify({ ok: code === 0, code })}\n`);
      this.#stopping.clear();
    });
  }

  /** Listens; a stale socket file is replaced, a live one (another supervisor of that name) is an error. */
  async listen(): Promise<void> {
    if (await isAlive(this.path)) {
      throw new WeftError('ERR_WEFT_INVALID_OPTION', `A supervisor is already running on ${this.path}`);
    }
    try {
      unlinkSync(this.path);
    } catch {}
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      // Only the owner may connect: the socket is created 0600 inside a 0700 directory.
      const old = process.umask(0o177);
      this.#server.listen(this.path, () => {
        process.umask(old);
        resolve();
      });
    });
    chmodSync(this.path, 0o600);
    this.#server.unref();
  }

  /** Stops listening, ends every client, and resolves once they are gone (at most 1 s). */
  async close(): Promise<void> {
    for (const s of this.#followers) s.end();
    this.#server.close();
    try {
      unlinkSync(this.path);
    } catch {}
    const gone = [...this.#clients].map((s) => new Promise((r) => s.once('close', r)));
    await Promise.race([Promise.all(gone), new Promise((r) => setTimeout(r, 1_000).unref())]);
  }

  #serve(socket: Socket): void {
    this.#clients.add(socket);
    socket.once('close', () => this.#clients.delete(socket));
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      const line = buffered.slice(0, nl);
      socket.removeAllListeners('data');
      void this.#handle(socket, line);
    });
  }

  async #handle(socket: Socket, line: string): Promise<void> {
    let request: { cmd?: unknown; follow?: unknown; metrics?: unknown };
    try {
      request = JSON.parse(line) as typeof request;
    } catch {
      socket.end(`${JSON.stringify({ ok: false, error: 'the request is not JSON' })}\n`);
      return;
    }
    const sup = this.#supervisor;
    switch (request.cmd) {
      case 'status': {
        // With metrics (weft status --json): each worker's snapshot, bounded by metricsTimeout.
        const status = request.metrics === true ? await statusWithMetrics(sup) : sup.status();
        socket.end(`${JSON.stringify({ ok: true, status })}\n`);
        return;
      }
      case 'reload': {
        const result = await sup.reload();
        socket.end(`${JSON.stringify({ ok: result.ok, result })}\n`);
        return;
      }
      case 'stop':
        socket.write(`${JSON.stringify({ ok: true, stopping: true })}\n`);
        // Answered with the exit code when the supervisor exits (see the constructor).
        this.#stopping.add(socket);
        void sup.stop('weft stop');
        return;
      case 'logs':
        for (const l of sup.recentLogs()) socket.write(`${JSON.stringify({ line: l })}\n`);
        if (request.follow === true) {
          this.#followers.add(socket);
          socket.on('close', () => this.#followers.delete(socket));
        } else socket.end();
        return;
      default:
        socket.end(
          `${JSON.stringify({ ok: false, error: `unknown command ${JSON.stringify(request.cmd)}` })}\n`,
        );
    }
  }
}

function isAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Sends one command to the supervisor named `name`; `onLine` gets every JSON line of the answer.
 * Rejects with `ERR_WEFT_NOT_RUNNING` when no supervisor listens there, and `ERR_WEFT_CONTROL_DENIED` when the
 * socket belongs to another user.
 */
export function sendControl(
  name: string,
  request: { cmd: ControlCommand; follow?: boolean; metrics?: boolean },
  onLine: (value: Record<string, unknown>) => void,
): Promise<void> {
  const path = socketPath(name);
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffered = '';
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        onLine(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>);
        buffered = buffered.slice(nl + 1);
      }
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        reject(
          new WeftError(
            'ERR_WEFT_NOT_RUNNING',
            `No weft supervisor named "${name}" is running (no socket at ${path})`,
          ),
        );
      } else if (err.code === 'EACCES' || err.code === 'EPERM') {
        reject(
          new WeftError(
            'ERR_WEFT_CONTROL_DENIED',
            `Permission denied on ${path}: the supervisor "${name}" belongs to another user`,
            { cause: err },
          ),
        );
      } else reject(err);
    });
    socket.once('close', () => resolve());
  });
}
