/**
 * The implementations the cluster benchmark compares, each started in its own process group on its own port and
 * stopped (group killed) afterwards: one plain process, raw node:cluster, PM2 in cluster mode, and weft.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownGroup, within } from './lib/harness.ts';
import { freePort, killGroup } from './lib/process.ts';

const root = new URL('..', import.meta.url).pathname;
const fixture = (name: string) => join(root, 'bench/fixtures', name);
const APP = fixture('cluster-app.mjs');
const WEFT = join(root, 'dist/cli/weft.js');
const PM2 = join(root, 'node_modules/pm2/bin/pm2');

export function pm2Version(): string {
  return (
    JSON.parse(readFileSync(join(root, 'node_modules/pm2/package.json'), 'utf8')) as { version: string }
  ).version;
}

/** A running implementation. */
export interface Running {
  port: number;
  /** Pids that answered while it came up: one per worker. */
  pids: number[];
  /** Rolling reload through the implementation's own command; resolves when the command returns. */
  reload?: () => Promise<void>;
  stop(): Promise<void>;
}

export interface Impl {
  name: string;
  workers: number;
  start(): Promise<Running>;
}

/** GET `path` on a fresh connection; resolves with the body, or undefined when the request fails. */
export function probe(port: number, path = '/pid', timeout = 1_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** Resolves with the distinct pids serving `port` once `count` of them have answered (fresh connections). */
async function serving(port: number, count: number, what: string): Promise<number[]> {
  const pids = new Set<number>();
  return within(
    (async () => {
      while (pids.size < count) {
        const body = await probe(port);
        if (body) pids.add(Number(body));
        else await new Promise((r) => setTimeout(r, 20));
      }
      return [...pids];
    })(),
    60_000,
    `${what} to serve from ${count} processes`,
  );
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [file, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${args.join(' ')} failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** Starts `args` with Node in its own process group and waits until `workers` processes serve the port. */
async function spawnGroup(name: string, args: string[], env: NodeJS.ProcessEnv, workers: number) {
  const port = await freePort();
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
    detached: true,
  });
  ownGroup(child);
  try {
    const pids = await serving(port, workers, name);
    return { child, port, pids };
  } catch (err) {
    await killGroup(child, 15_000);
    throw err;
  }
}

export const single: Impl = {
  name: 'single process',
  workers: 1,
  async start() {
    const { child, port, pids } = await spawnGroup(this.name, [APP], {}, 1);
    return { port, pids, stop: () => killGroup(child, 15_000) };
  },
};

export const rawCluster: Impl = {
  name: 'raw node:cluster',
  workers: 2,
  async start() {
    const { child, port, pids } = await spawnGroup(
      this.name,
      [fixture('cluster-raw.mjs')],
      { BENCH_WORKERS: '2' },
      2,
    );
    return { port, pids, stop: () => killGroup(child, 15_000) };
  },
};

export const weft: Impl = {
  name: 'weft',
  workers: 2,
  async start() {
    const runtime = mkdtempSync(join(tmpdir(), 'weft-bench-run-'));
    const env = { BENCH_MODE: 'weft', WEFT_RUNTIME_DIR: runtime };
    const { child, port, pids } = await spawnGroup(
      this.name,
      [WEFT, 'start', APP, '--workers', '2', '--name', 'bench'],
      env,
      2,
    );
    const cliEnv = { ...process.env, ...env };
    return {
      port,
      pids,
      reload: async () => {
        await run(WEFT, ['reload', '--name', 'bench'], cliEnv);
      },
      stop: async () => {
        await killGroup(child, 15_000);
        rmSync(runtime, { recursive: true, force: true });
      },
    };
  },
};

export const pm2: Impl = {
  name: `PM2 ${pm2Version()}`,
  workers: 2,
  async start() {
    // A PM2 home of its own, so the daemon this starts is the only one it talks to, and `pm2 kill` ends it.
    const home = mkdtempSync(join(tmpdir(), 'weft-bench-pm2-'));
    const port = await freePort();
    const env = { ...process.env, PM2_HOME: home, PORT: String(port) };
    const stop = async () => {
      await run(PM2, ['kill'], env).catch(() => {});
      rmSync(home, { recursive: true, force: true });
    };
    try {
      // --wait-ready: PM2 counts a worker up once it sends 'ready' (the app does, once listening), also on reload.
      await run(PM2, ['start', APP, '-i', '2', '--name', 'bench', '--wait-ready'], env);
      const pids = await serving(port, 2, this.name);
      return {
        port,
        pids,
        reload: async () => {
          await run(PM2, ['reload', 'bench'], env);
        },
        stop,
      };
    } catch (err) {
      await stop();
      throw err;
    }
  },
};
