/**
 * One trial of the lifecycle benchmark: a fixture server in a child process, 50 busy keep-alive connections, SIGTERM
 * after {@link SIGTERM_AFTER_MS}, and what was lost, seen from the server's own log and from the client.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { HANDLER_MS } from './fixtures/lifecycle-common.ts';
import { within } from './lib/harness.ts';
import { type ClientMode, type ConnRecord, startLoad } from './lifecycle-client.ts';

export { HANDLER_MS };
export const CONNECTIONS = 50;
export const SIGTERM_AFTER_MS = 2_000;
/** A process still running this long after SIGTERM is killed with SIGKILL. */
export const KILL_AFTER_MS = 15_000;
/** The load goes on this long after the process has gone, so resets caused by its exit are seen. */
const AFTER_EXIT_MS = 300;

export interface Impl {
  readonly name: string;
  readonly role: 'subject' | 'anchor' | 'baseline';
  /** The fixture file in bench/fixtures/. */
  readonly fixture: string;
  /** How it is set up, for the report. */
  readonly note: string;
}

/** How requests the client sent but got no response for ended. */
export interface ClientLosses {
  /** Connection refused: the listener was closed (fine). */
  refused: number;
  /** Connected at TCP level but never accepted by the server process: reset from the listen backlog (fine). */
  notAccepted: number;
  /** Sent on a connection after the server's `Connection: close` (the client's fault; stock autocannon only). */
  afterClose: number;
  /** On a connection the server had accepted and not told to close: the client-visible resets (not fine). */
  resets: number;
  /** Of {@link resets}: on connections accepted after SIGTERM (the rest were open at SIGTERM). */
  resetsAcceptedAfter: number;
  /** Resets by how the connection ended (ECONNRESET, EPIPE, end = FIN with the request unanswered). */
  resetHow: Record<string, number>;
  timeouts: number;
  /** Still unanswered when the load was stopped (after the process had exited). */
  atStop: number;
}

export interface Sample {
  /** Requests that reached the handler, and of those the ones whose response finished with a 2xx. */
  started: number;
  finished: number;
  /** started − finished. */
  lost: number;
  client: ClientLosses;
  /** 2xx and other responses the client read. */
  ok: number;
  non2xx: number;
  /** autocannon's own counters. */
  acErrors: number;
  acTimeouts: number;
  /** Ms from SIGTERM to the process's exit; undefined when it had to be killed. */
  exitMs: number | undefined;
  /** Exit code or signal. */
  exit: string;
  /** Lines explaining each lost request and each reset, relative to SIGTERM. */
  detail: string[];
}

/** Children still running, killed by PID if the benchmark itself dies. */
const live = new Set<ChildProcess>();
let hooked = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const c of live) if (c.pid !== undefined) killQuietly(c.pid);
  });
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

const epoch = () => performance.timeOrigin + performance.now();

/** Collects a stream's text, keeping at most `max` characters. */
function collect(stream: Readable, max: number): { text: () => string; ended: Promise<void> } {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    if (text.length < max) text += chunk.slice(0, max - text.length);
  });
  const ended = new Promise<void>((resolve) => {
    stream.once('close', resolve);
    stream.once('end', resolve);
  });
  return { text: () => text, ended };
}

/** Resolves with the port the fixture announces on its first stdout line. */
function portOf(child: ChildProcess, stderr: () => string): Promise<number> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      const newline = buffer.indexOf('\n');
      if (newline === -1) return;
      child.stdout!.off('data', onData);
      try {
        resolve((JSON.parse(buffer.slice(0, newline)) as { port: number }).port);
      } catch {
        reject(new Error(`fixture printed ${JSON.stringify(buffer.slice(0, 200))} instead of its port`));
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code, signal) =>
      reject(new Error(`fixture exited (${code ?? signal}) before listening: ${stderr().slice(-2_000)}`)),
    );
  });
}

/** Runs one trial of `impl` with the given client behaviour. Bounded in time; the child is always gone after. */
export async function trial(impl: Impl, mode: ClientMode): Promise<Sample> {
  const fixture = fileURLToPath(new URL(`./fixtures/${impl.fixture}`, import.meta.url));
  const child = spawn(process.execPath, [fixture], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    env: { ...process.env, BENCH_LOG_FD: '3' },
  });
  track(child);
  const exited = new Promise<{ at: number; status: string }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ at: epoch(), status: signal ?? String(code) }));
  });
  const serverLog = collect(child.stdio[3] as Readable, 64 * 2 ** 20);
  const stderr = collect(child.stderr!, 256 * 1024);
  let load: ReturnType<typeof startLoad> | undefined;
  try {
    const port = await within(portOf(child, stderr.text), 15_000, `${impl.name}: start`);
    load = startLoad({
      url: `http://127.0.0.1:${port}/`,
      connections: CONNECTIONS,
      maxSeconds: (SIGTERM_AFTER_MS + KILL_AFTER_MS) / 1000 + 5,
      mode,
      stagger: HANDLER_MS / CONNECTIONS,
    });
    await sleep(SIGTERM_AFTER_MS);
    if (!alive(child)) throw new Error(`${impl.name} exited before SIGTERM: ${stderr.text().slice(-2_000)}`);
    const term = epoch();
    child.kill('SIGTERM');
    const patience = new AbortController();
    const first = await Promise.race([
      exited,
      sleep(KILL_AFTER_MS, undefined, { signal: patience.signal }).catch(() => undefined),
    ]);
    patience.abort();
    if (first === undefined) child.kill('SIGKILL');
    const { at, status } = await within(exited, 5_000, `${impl.name}: exit after SIGKILL`);
    await sleep(AFTER_EXIT_MS);
    const result = await within(load.stop(), 5_000, `${impl.name}: stopping the load`);
    await within(serverLog.ended, 5_000, `${impl.name}: reading the server's log`);
    return analyse(serverLog.text(), load.conns, term, {
      exitMs: first === undefined ? undefined : at - term,
      exit: first === undefined ? 'SIGKILL' : status,
      acErrors: result.errors,
      acTimeouts: result.timeouts,
      ok: result['2xx'],
      non2xx: result.non2xx,
    });
  } finally {
    if (alive(child) && child.pid !== undefined) killQuietly(child.pid);
    if (load) await within(load.stop(), 5_000, `${impl.name}: stopping the load`).catch(() => {});
  }
}

interface ServerRequest {
  id: number;
  port: number;
  started: number;
  finished?: number;
  status?: number;
  closed?: number;
}

function analyse(
  log: string,
  conns: ConnRecord[],
  term: number,
  exit: Pick<Sample, 'exitMs' | 'exit' | 'acErrors' | 'acTimeouts' | 'ok' | 'non2xx'>,
): Sample {
  const accepted = new Map<number, number>();
  const socketClosed = new Map<number, { at: number; hadError: boolean }>();
  const requests = new Map<number, ServerRequest>();
  for (const line of log.split('\n')) {
    const [kind, t, a, b] = line.split(' ');
    const at = Number(t);
    if (kind === 'C') accepted.set(Number(a), at);
    else if (kind === 'D') socketClosed.set(Number(a), { at, hadError: b === '1' });
    else if (kind === 'S') requests.set(Number(a), { id: Number(a), port: Number(b), started: at });
    else if (kind === 'F') {
      const r = requests.get(Number(a));
      if (r) {
        r.finished = at;
        r.status = Number(b);
      }
    } else if (kind === 'X') {
      const r = requests.get(Number(a));
      if (r) r.closed = at;
    }
  }
  const rel = (t: number | undefined) => (t === undefined ? '—' : `${(t - term).toFixed(1)} ms`);
  const detail: string[] = [];
  let finished = 0;
  for (const r of requests.values()) {
    if (r.finished !== undefined && r.status !== undefined && r.status >= 200 && r.status < 300) {
      finished++;
      continue;
    }
    const sock = socketClosed.get(r.port);
    detail.push(
      `lost request #${r.id} on client port ${r.port}: started at ${rel(r.started)}, ` +
        (r.finished !== undefined
          ? `finished with ${r.status} at ${rel(r.finished)}`
          : r.closed !== undefined
            ? `response closed unfinished at ${rel(r.closed)}`
            : 'never finished') +
        `; socket closed at ${rel(sock?.at)}${sock?.hadError ? ' with an error' : ''}`,
    );
  }
  const client: ClientLosses = {
    refused: 0,
    notAccepted: 0,
    afterClose: 0,
    resets: 0,
    resetsAcceptedAfter: 0,
    resetHow: {},
    timeouts: 0,
    atStop: 0,
  };
  for (const c of conns) {
    const unanswered = c.sent - c.received;
    if (unanswered <= 0) continue;
    if (c.connected === undefined) client.refused += unanswered;
    else if (c.localPort === undefined || !accepted.has(c.localPort)) client.notAccepted += unanswered;
    else if (c.closeAnnounced) client.afterClose += unanswered;
    else if (c.how === 'timeout') client.timeouts += unanswered;
    else if (c.how === 'load-stopped' || c.how === undefined) client.atStop += unanswered;
    else {
      client.resets += unanswered;
      if (accepted.get(c.localPort)! >= term) client.resetsAcceptedAfter += unanswered;
      client.resetHow[c.how] = (client.resetHow[c.how] ?? 0) + unanswered;
      const sock = socketClosed.get(c.localPort);
      detail.push(
        `reset: client port ${c.localPort} (accepted at ${rel(accepted.get(c.localPort))}), ${c.sent} sent, ` +
          `${c.received} answered, ended by ${c.how} at ${rel(c.ended)}` +
          `${c.later.length > 0 ? ` then ${c.later.join(', ')}` : ''}; server closed the socket at ${rel(sock?.at)}`,
      );
    }
  }
  return {
    started: requests.size,
    finished,
    lost: requests.size - finished,
    client,
    ...exit,
    detail,
  };
}
