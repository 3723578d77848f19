// Load from the clients users use — node:http with a keep-alive Agent, undici (Node's fetch) and stock autocannon —
// kept running while a cluster reloads or stops, and past it, counting every outcome by kind. Resets (the peer
// closed a connection a request was on) are failures; refused connections after a stop are not: nobody listens.
import type { EventEmitter } from 'node:events';
import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';

/** The part of autocannon's programmatic API used here (it ships no types). */
interface Autocannon extends EventEmitter {
  stop(): void;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (options: object) => Autocannon;

export type ClientName = 'agent' | 'undici' | 'autocannon';
export const CLIENTS: readonly ClientName[] = ['agent', 'undici', 'autocannon'];

/** What one client saw. */
export interface Counts {
  /** 2xx answers. */
  ok: number;
  /** Other statuses (a 503 from a draining worker would be one). */
  failed: number;
  /** ECONNRESET, EPIPE, socket hang up, undici's "other side closed": a request lost on a live connection. */
  resets: number;
  /** ECONNREFUSED: nothing listening (after a stop). */
  refused: number;
  /** Anything else, by code. */
  other: Record<string, number>;
}

export interface LoadOptions {
  port: number;
  path?: string;
  /** Concurrent connections (loops) per client. Default: 10. */
  connections?: number;
  clients?: readonly ClientName[];
  /** Hard bound on the whole run, ms: the load stops by itself. Default: 60 000. */
  maxMs?: number;
}

export interface Load {
  /** Counts so far, per client. */
  counts(): Record<ClientName, Counts>;
  /** Stops every loop and resolves with the final counts once each client has settled. */
  stop(): Promise<Record<ClientName, Counts>>;
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE']);

function empty(): Counts {
  return { ok: 0, failed: 0, resets: 0, refused: 0, other: {} };
}

function classify(c: Counts, err: unknown): void {
  if (process.env.LOAD_DEBUG)
    console.error(Date.now(), 'load error', err, (err as { cause?: unknown }).cause);
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e.cause?.code ?? e.code ?? e.message ?? 'unknown';
  const message = e.cause?.message ?? e.message ?? '';
  if (code === 'ECONNREFUSED') c.refused++;
  else if (RESET_CODES.has(code) || /socket hang up|other side closed/i.test(message)) c.resets++;
  else c.other[code] = (c.other[code] ?? 0) + 1;
}

function status(c: Counts, code: number): void {
  if (code >= 200 && code < 300) c.ok++;
  else c.failed++;
}

/** A pause for a loop whose connection was refused, so that it does not spin while nothing listens. */
const refusedPause = () => new Promise((r) => setTimeout(r, 20));

/** Starts the load; every loop ends at `stop()` or after `maxMs`. */
export function startLoad(options: LoadOptions): Load {
  const { port, path = '/?ms=5', connections = 10, clients = CLIENTS, maxMs = 60_000 } = options;
  const counts = { agent: empty(), undici: empty(), autocannon: empty() };
  const ac = new AbortController();
  const bound = setTimeout(() => ac.abort(), maxMs);
  const url = `http://127.0.0.1:${port}${path}`;
  const running: Promise<void>[] = [];

  if (clients.includes('agent')) {
    const agent = new Agent({ keepAlive: true, maxSockets: connections });
    const one = () =>
      new Promise<void>((resolve) => {
        const req = request(url, { agent }, (res) => {
          res.resume();
          res.on('end', () => {
            status(counts.agent, res.statusCode ?? 0);
            resolve();
          });
          res.on('error', (err) => {
            classify(counts.agent, err);
            resolve();
          });
        });
        req.on('error', (err) => {
          classify(counts.agent, err);
          if ((err as { code?: string }).code === 'ECONNREFUSED') void refusedPause().then(() => resolve());
          else resolve();
        });
        req.end();
      });
    const loop = async () => {
      while (!ac.signal.aborted) await one();
    };
    running.push(Promise.all(Array.from({ length: connections }, loop)).then(() => agent.destroy()));
  }

  if (clients.includes('undici')) {
    const loop = async () => {
      while (!ac.signal.aborted) {
        try {
          const res = await fetch(url);
          await res.arrayBuffer();
          status(counts.undici, res.status);
        } catch (err) {
          classify(counts.undici, err);
          const code = (err as { cause?: { code?: string } }).cause?.code;
          if (code === 'ECONNREFUSED') await refusedPause();
        }
      }
    };
    running.push(Promise.all(Array.from({ length: connections }, loop)).then(() => {}));
  }

  if (clients.includes('autocannon')) {
    const instance = autocannon({ url, connections, duration: maxMs / 1000 + 1, timeout: 10 });
    instance.on('response', (_client: unknown, statusCode: number) => status(counts.autocannon, statusCode));
    instance.on('reqError', (err: unknown) => classify(counts.autocannon, err));
    const done = new Promise<void>((resolve) => instance.once('done', () => resolve()));
    ac.signal.addEventListener('abort', () => instance.stop(), { once: true });
    running.push(done);
  }

  const snapshot = () => structuredClone(counts);
  return {
    counts: snapshot,
    async stop() {
      ac.abort();
      clearTimeout(bound);
      await Promise.all(running);
      return snapshot();
    },
  };
}

/** The counts that break the guarantee: every reset and failed answer, per client (empty when none). */
export function losses(counts: Record<ClientName, Counts>): string[] {
  const out: string[] = [];
  for (const [client, c] of Object.entries(counts)) {
    if (c.resets > 0) out.push(`${client}: ${c.resets} resets`);
    if (c.failed > 0) out.push(`${client}: ${c.failed} failed answers`);
    for (const [code, n] of Object.entries(c.other)) out.push(`${client}: ${n} × ${code}`);
  }
  return out;
}
