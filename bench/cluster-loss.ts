/**
 * The zero-loss matrix of test/cluster/zero-loss.test.ts, run against weft, PM2 and raw node:cluster: each
 * implementation runs an app on 2 workers while the test's load generator (test/cluster/load.ts: node:http keep-alive
 * Agent, undici fetch, stock autocannon, 8 connections each) sends requests back to back; an event happens (two
 * reloads back to back, two 1 s apart, a stop, SIGINT or SIGTERM to the process group) and the load runs on for 1 s
 * after it returned (after a stop: after the implementation exited). Each cell starts the implementation afresh.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLIENTS, type ClientName, type Counts, startLoad } from '../test/cluster/load.ts';
import { pm2Version, probe } from './cluster-subjects.ts';
import { ownGroup, rotate, within } from './lib/harness.ts';
import { freePort } from './lib/process.ts';

const root = new URL('..', import.meta.url).pathname;
const WEFT = join(root, 'dist/cli/weft.js');
const PM2 = join(root, 'node_modules/pm2/bin/pm2');
const RAW = join(root, 'bench/fixtures/cluster-raw.mjs');
/** Load kept running after the event returned, as in the test. */
const AFTER_MS = 1_000;
/** Grace for a worker's drain, the same for all: `--kill-timeout 10s`, PM2 `--kill-timeout 10000`, raw 10 s. */
const KILL_TIMEOUT_MS = 10_000;

export interface App {
  name: string;
  file: string;
  env: Record<string, string>;
}
export const APPS: App[] = [
  {
    name: 'weftjs/lifecycle',
    file: join(root, 'bench/fixtures/cluster-app.mjs'),
    env: { BENCH_MODE: 'weft' },
  },
  { name: 'no Weft code', file: join(root, 'test/cluster/fixtures/plain-app.mjs'), env: {} },
  { name: 'fastify', file: join(root, 'test/cluster/fixtures/fastify-app.mjs'), env: {} },
];

export type Event =
  | 'two reloads back to back'
  | 'two reloads 1 s apart'
  | 'stop'
  | 'SIGINT to group'
  | 'SIGTERM to group';
export const EVENTS: Event[] = [
  'two reloads back to back',
  'two reloads 1 s apart',
  'stop',
  'SIGINT to group',
  'SIGTERM to group',
];
export const isReload = (e: Event) => e.startsWith('two reloads');

/** One implementation running one app, started for one cell. */
interface Started {
  reload(): Promise<void>;
  stop(): Promise<void>;
  /** The process group the signals go to. */
  group: number;
  /** Resolves when the implementation has exited (its supervisor, primary or daemon). */
  exited(): Promise<void>;
  /** Removes everything it left: SIGKILL to its group, temporary directories. */
  cleanup(): Promise<void>;
}

export interface Impl {
  name: string;
  /** What "stop" is for it, for the report. */
  stopIs: string;
  start(app: App, port: number): Promise<Started>;
}

function exec(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [file, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const killGroupNow = (pgid: number) => {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {}
};

/** Resolves when `pid` no longer exists (polled; it is not our child). */
async function gone(pid: number, what: string): Promise<void> {
  await within(
    (async () => {
      while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
    })(),
    KILL_TIMEOUT_MS + 15_000,
    what,
  );
}

/** Spawns Node on `args` in a process group of its own; stdout is collected. */
function spawnDetached(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'ignore'], detached: true });
  ownGroup(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
  });
  const exit = new Promise<void>((r) => child.once('exit', () => r()));
  /** Resolves once stdout holds `text` `times` times after `from` characters. */
  const waitFor = (text: string, from: number, what: string) =>
    within(
      new Promise<void>((resolve, reject) => {
        const poll = () => {
          if (out.indexOf(text, from) !== -1) resolve();
          else if (child.exitCode !== null) reject(new Error(`${what}: exited first`));
          else setTimeout(poll, 20);
        };
        poll();
      }),
      60_000,
      what,
    );
  return { child, exit, out: () => out, waitFor };
}

const childExited = (child: ChildProcess, exit: Promise<void>) => () =>
  within(child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : exit, 25_000, 'exit');

export const weft: Impl = {
  name: 'weft',
  stopIs: '`weft stop --name`',
  async start(app, port) {
    const runtime = mkdtempSync(join(tmpdir(), 'weft-bench-loss-'));
    const env = { ...process.env, ...app.env, PORT: String(port), WEFT_RUNTIME_DIR: runtime };
    const name = 'bench';
    const p = spawnDetached(
      [WEFT, 'start', app.file, '--workers', '2', '--name', name, '--kill-timeout', '10s'],
      env,
    );
    const cleanup = async () => {
      killGroupNow(p.child.pid!);
      await within(p.exit, 10_000, 'weft start to be killed').catch(() => {});
      rmSync(runtime, { recursive: true, force: true });
    };
    try {
      await p.waitFor('control socket', 0, 'weft start to open its control socket');
    } catch (err) {
      await cleanup();
      throw err;
    }
    return {
      group: p.child.pid!,
      reload: async () => {
        await exec(WEFT, ['reload', '--name', name], env);
      },
      stop: async () => {
        await exec(WEFT, ['stop', '--name', name], env);
      },
      exited: childExited(p.child, p.exit),
      cleanup,
    };
  },
};

export const rawCluster: Impl = {
  name: 'raw node:cluster',
  stopIs: 'SIGTERM to the primary',
  async start(app, port) {
    const env = { ...process.env, ...app.env, PORT: String(port), BENCH_APP: app.file, BENCH_WORKERS: '2' };
    const p = spawnDetached([RAW], env);
    const cleanup = async () => {
      killGroupNow(p.child.pid!);
      await within(p.exit, 10_000, 'the primary to be killed').catch(() => {});
    };
    return {
      group: p.child.pid!,
      reload: async () => {
        const from = p.out().length;
        p.child.kill('SIGHUP');
        await p.waitFor('reloaded', from, 'SIGHUP reload');
      },
      stop: async () => {
        p.child.kill('SIGTERM');
      },
      exited: childExited(p.child, p.exit),
      cleanup,
    };
  },
};

export const pm2: Impl = {
  name: `PM2 ${pm2Version()}`,
  stopIs: '`pm2 stop bench`',
  async start(app, port) {
    // A PM2 home of its own, so the daemon this starts is the only one it talks to.
    const home = mkdtempSync(join(tmpdir(), 'weft-bench-pm2-loss-'));
    const env = { ...process.env, ...app.env, PM2_HOME: home, PORT: String(port) };
    let daemon = 0;
    let stopped = false;
    const cleanup = async () => {
      if (daemon && alive(daemon)) await exec(PM2, ['kill'], env).catch(() => {});
      // The daemon runs in a session of its own (PM2 spawns it detached): its workers are in its group.
      if (daemon) killGroupNow(daemon);
      rmSync(home, { recursive: true, force: true });
    };
    try {
      // No --wait-ready: these apps send no 'ready'; PM2 then counts a cluster worker up at its 'listening'.
      await exec(
        PM2,
        ['start', app.file, '-i', '2', '--name', 'bench', '--kill-timeout', String(KILL_TIMEOUT_MS)],
        env,
      );
      daemon = Number(readFileSync(join(home, 'pm2.pid'), 'utf8'));
    } catch (err) {
      await cleanup();
      throw err;
    }
    return {
      group: daemon,
      reload: async () => {
        await exec(PM2, ['reload', 'bench'], env);
      },
      stop: async () => {
        await exec(PM2, ['stop', 'bench'], env);
        stopped = true;
      },
      // `pm2 stop` returns once the app's workers exited; the daemon stays up. After a signal the daemon exits.
      exited: () => (stopped ? Promise.resolve() : gone(daemon, 'the PM2 daemon to exit')),
      cleanup,
    };
  },
};

/** Resolves once `count` distinct pids answered `/` on fresh connections (every app ends its body with its pid). */
async function serving(port: number, count: number): Promise<void> {
  const pids = new Set<string>();
  await within(
    (async () => {
      while (pids.size < count) {
        const body = await probe(port, '/');
        if (body) pids.add(body.split(' ').pop()!);
        else await new Promise((r) => setTimeout(r, 20));
      }
    })(),
    60_000,
    `${count} workers to serve`,
  );
}

export type Cell = Record<ClientName, Counts>;

/** One cell: start `impl` with `app`, load it, run `event`, load on for 1 s after; the counts of every client. */
export async function measure(
  impl: Impl,
  app: App,
  event: Event,
  onStarted: (s: Started) => void = () => {},
): Promise<Cell> {
  const port = await freePort();
  const s = await impl.start(app, port);
  onStarted(s);
  try {
    await serving(port, 2);
    const load = startLoad({ port, connections: 8, maxMs: 90_000 });
    try {
      await within(
        (async () => {
          while (!CLIENTS.every((c) => load.counts()[c].ok >= 20))
            await new Promise((r) => setTimeout(r, 20));
        })(),
        15_000,
        'every client served',
      );
      await within(event_(s, event), 60_000, event);
      if (!isReload(event)) await s.exited();
      await new Promise((r) => setTimeout(r, AFTER_MS));
    } finally {
      await load.stop();
    }
    return load.counts();
  } finally {
    await s.cleanup();
  }
}

async function event_(s: Started, event: Event): Promise<void> {
  switch (event) {
    case 'two reloads back to back':
      await s.reload();
      await s.reload();
      return;
    case 'two reloads 1 s apart':
      await s.reload();
      await new Promise((r) => setTimeout(r, 1_000));
      await s.reload();
      return;
    case 'stop':
      await s.stop();
      return;
    default:
      process.kill(-s.group, event.startsWith('SIGINT') ? 'SIGINT' : 'SIGTERM');
  }
}

export interface Matrix {
  impls: Impl[];
  /** Per `impl.name|app.name|event`: the counts summed over rounds, or the error that stopped the cell. */
  cells: Map<string, { counts?: Cell; error?: string; rounds: number }>;
}

export const key = (impl: Impl, app: App, event: Event) => `${impl.name}|${app.name}|${event}`;

/** Every app × event cell, `rounds` times; within a cell the implementations alternate in a rotated order. */
export async function runMatrix(rounds: number, log: (line: string) => void): Promise<Matrix> {
  const impls = [weft, pm2, rawCluster];
  const cells: Matrix['cells'] = new Map();
  let turn = 0;
  for (let round = 0; round < rounds; round++) {
    for (const app of APPS) {
      for (const event of EVENTS) {
        for (const impl of rotate(impls, turn++)) {
          const k = key(impl, app, event);
          const cell = cells.get(k) ?? { rounds: 0 };
          cells.set(k, cell);
          if (cell.error !== undefined) continue;
          const cellOf: { started?: Started } = {};
          try {
            const counts = await within(
              measure(impl, app, event, (s) => {
                cellOf.started = s;
              }),
              150_000,
              k,
            );
            cell.counts = cell.counts ? add(cell.counts, counts) : counts;
            cell.rounds++;
            log(`    ${k}: ${summary(counts)}`);
          } catch (err) {
            cell.error = err instanceof Error ? err.message.split('\n')[0] : String(err);
            log(`    ${k}: failed: ${cell.error}`);
            // A cell past its deadline still runs, and its own cleanup may come after the benchmark's end (a PM2
            // daemon is nobody's child here): its processes go now (cleanup ends with SIGKILL to its group).
            await cellOf.started?.cleanup().catch(() => {});
          }
        }
      }
    }
  }
  return { impls, cells };
}

function add(a: Cell, b: Cell): Cell {
  const out = structuredClone(a);
  for (const c of CLIENTS) {
    out[c].ok += b[c].ok;
    out[c].failed += b[c].failed;
    out[c].resets += b[c].resets;
    out[c].refused += b[c].refused;
    for (const [code, n] of Object.entries(b[c].other)) out[c].other[code] = (out[c].other[code] ?? 0) + n;
  }
  return out;
}

/** Totals over the three clients. */
export function total(cell: Cell): {
  ok: number;
  failed: number;
  resets: number;
  refused: number;
  other: number;
} {
  const t = { ok: 0, failed: 0, resets: 0, refused: 0, other: 0 };
  for (const c of CLIENTS) {
    t.ok += cell[c].ok;
    t.failed += cell[c].failed;
    t.resets += cell[c].resets;
    t.refused += cell[c].refused;
    t.other += Object.values(cell[c].other).reduce((x, y) => x + y, 0);
  }
  return t;
}

function summary(cell: Cell): string {
  return CLIENTS.map((c) => {
    const x = cell[c];
    const other = Object.entries(x.other).map(([code, n]) => ` ${n}×${code}`);
    return `${c} ${x.ok} ok/${x.failed} failed/${x.resets} resets/${x.refused} refused${other.join('')}`;
  }).join('; ');
}

/** Where the losses of a cell were, per client: `agent 3 resets, undici 1 failed`; empty when none. */
export function lossesByClient(cell: Cell): string {
  const parts: string[] = [];
  for (const c of CLIENTS) {
    const x = cell[c];
    const bits = [
      x.resets ? `${x.resets} resets` : '',
      x.failed ? `${x.failed} failed` : '',
      ...Object.entries(x.other).map(([code, n]) => `${n} × ${code}`),
    ].filter(Boolean);
    if (bits.length) parts.push(`${c} ${bits.join(', ')}`);
  }
  return parts.join('; ');
}
