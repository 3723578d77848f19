/**
 * The file service as the `files` benchmark runs it: `weft start apps/files/dist/server.js --workers 2`, compiled
 * (as a deployment runs it), in its own process group with its own data and runtime directories; plus the
 * HTTP client calls the benchmark makes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ownGroup, within } from './lib/harness.ts';
import { freePort, killGroup } from './lib/process.ts';

const root = new URL('..', import.meta.url).pathname;
// Compiled JavaScript, as production runs it (`npm run bench` builds `dist/` and `apps/files/dist/` first): type
// stripping at load costs each process about 29 MB and start-up time that a deployment does not pay.
const CLI = join(root, 'dist/cli/weft.js');
const SERVER = join(root, 'apps/files/dist/server.js');
/** The service's supervisor settings, as `npm start` uses them (one malloc arena per worker). */
const CONFIG = process.env.BENCH_FILES_CONFIG ?? join(root, 'apps/files/weft.config.mjs');

/** A process group the benchmark started, and how to end it. */
export interface Group {
  child: ChildProcess;
  url: string;
  /** The last 64 KiB of its output, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

/** Keeps the tail of a child's stdout and stderr (reading them so the pipes never fill). */
function tail(child: ChildProcess): () => string {
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => out;
}

/** Resolves once `ready(output)` holds; fails with the output when the child exits or `ms` passes. */
async function waitForOutput(
  child: ChildProcess,
  output: () => string,
  ready: RegExp,
  count: number,
  ms: number,
) {
  const deadline = Date.now() + ms;
  while ((output().match(ready) ?? []).length < count) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${output()}`);
    if (Date.now() > deadline) throw new Error(`not ready within ${ms} ms:\n${output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

let services = 0;

/**
 * The service under `weft start` with 2 workers (or `workers`), `extra` added to its environment (a remote queue,
 * database or storage); resolves once every worker is ready.
 */
export async function startService(
  extra: Record<string, string> = {},
  workers = 2,
): Promise<Group & { dataDir: string }> {
  const base = mkdtempSync(join(tmpdir(), 'weft-bench-files-'));
  const dataDir = join(base, 'data');
  const port = await freePort();
  const env = {
    ...process.env,
    PORT: String(port),
    FILES_DATA_DIR: dataDir,
    FILES_LOG_LEVEL: 'warn',
    WEFT_RUNTIME_DIR: join(base, 'run'),
    ...extra,
  };
  // `BENCH_BUILD_ROOT`: another checkout's build (an A/B of two commits, bench/files-small.ts).
  const build = extra.BENCH_BUILD_ROOT;
  const [cli, server] = build
    ? [join(build, 'dist/cli/weft.js'), join(build, 'apps/files/dist/server.js')]
    : [CLI, SERVER];
  const args = [cli, 'start', server, '--config', CONFIG, '--workers', String(workers)];
  const name = `files-bench-${process.pid}-${++services}`;
  const child = spawn(process.execPath, [...args, '--name', name], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  ownGroup(child);
  const output = tail(child);
  const stop = async () => {
    await killGroup(child, 40_000);
    rmSync(base, { recursive: true, force: true });
  };
  try {
    await waitForOutput(child, output, /"worker \d ready"/g, workers, 60_000);
  } catch (err) {
    await stop();
    throw new Error(`weft start apps/files: ${(err as Error).message}`);
  }
  return { child, url: `http://127.0.0.1:${port}`, dataDir, output, stop };
}

/** A `bench/fixtures/*.ts` server that prints `listening <port>` once it serves. */
export async function startFixture(file: string, env: Record<string, string>): Promise<Group> {
  const child = spawn(process.execPath, [join(root, 'bench/fixtures', file)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  ownGroup(child);
  const output = tail(child);
  try {
    await waitForOutput(child, output, /^listening \d+$/m, 1, 30_000);
  } catch (err) {
    await killGroup(child);
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  const port = /^listening (\d+)$/m.exec(output())![1];
  return { child, url: `http://127.0.0.1:${port}`, output, stop: () => killGroup(child) };
}

/** Keep-alive connections for the benchmark's requests: two uploads and the polls beside them. */
export const agent = new Agent({ keepAlive: true, maxSockets: 4 });

/** Response of an HTTP call: status and parsed JSON body (or undefined). */
export interface Answer<T> {
  status: number;
  body: T;
}

/** POSTs the file at `path` (streamed, with its length) to `url`; resolves with the answer. */
export function uploadFile<T>(
  url: string,
  path: string,
  size: number,
  timeoutMs = 120_000,
): Promise<Answer<T>> {
  const sent = new Promise<Answer<T>>((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T });
          } catch {
            reject(new Error(`POST ${url}: ${res.statusCode} ${text.slice(0, 200)}`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    pipeline(createReadStream(path, { highWaterMark: 256 * 1024 }), req).catch(reject);
  });
  return within(sent, timeoutMs, `POST ${url}`);
}

/** GET `url`; resolves with the status and the JSON body (undefined when it is not JSON). */
export function getJson<T>(url: string, method = 'GET'): Promise<Answer<T | undefined>> {
  const got = new Promise<Answer<T | undefined>>((resolve, reject) => {
    const req = request(url, { method, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
      });
      res.on('end', () => {
        let body: T | undefined;
        try {
          body = JSON.parse(text) as T;
        } catch {}
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  return within(got, 30_000, `${method} ${url}`);
}

/** Calls `probe` every `everyMs` until it returns a value; fails naming `what` after `ms`. */
export async function until<T>(
  probe: () => Promise<T | undefined>,
  ms: number,
  what: string,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * The service variants of an A/B script (`bench/files-small.ts`, `bench/files-jobs.ts`), from `VARIANTS`:
 * `'a:{};b:{"NAME":"value"}'` is two services, the second with `NAME=value` added to its environment
 * (`BENCH_BUILD_ROOT`: another checkout's build). Default: one, `service`, as it is.
 */
export function variantsFromEnv(): { name: string; env: Record<string, string> }[] {
  return (process.env.VARIANTS ?? 'service:{}').split(';').map((v) => {
    const at = v.indexOf(':');
    return { name: v.slice(0, at), env: JSON.parse(v.slice(at + 1)) as Record<string, string> };
  });
}
