/**
 * Helpers of the tests that run the service as users do, under `weft start` (cluster.test.ts, two-node.test.ts):
 * start a supervisor, run `weft` commands against it, poll until a condition holds, and keep uploads flowing.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { freePort } from './helpers.ts';

const root = new URL('../../../', import.meta.url).pathname;
const cli = join(root, 'src/cli/weft.ts');
const server = join(root, 'apps/files/src/server.ts');
export const base = mkdtempSync(join(tmpdir(), 'files-cluster-'));
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null || !c.pid) continue;
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      // Its group is gone already.
    }
  }
  rmSync(base, { recursive: true, force: true });
});

let clusters = 0;

export interface Cluster {
  url: string;
  dataDir: string;
  name: string;
  env: NodeJS.ProcessEnv;
  child: ChildProcess;
  exit: Promise<number | null>;
  output(): string;
}

/**
 * `weft start apps/files/src/server.ts --workers N` (default 2) with its own data directory; resolves once every
 * worker serves. `port` reuses a port (a machine that comes back).
 */
export async function startCluster(
  extra: Record<string, string> = {},
  options: { workers?: number; port?: number } = {},
): Promise<Cluster> {
  const n = ++clusters;
  const workers = options.workers ?? 2;
  const dataDir = join(base, `data${n}`);
  const port = options.port ?? (await freePort());
  const name = `files-test-${process.pid}-${n}`;
  const env = {
    ...process.env,
    PORT: String(port),
    FILES_DATA_DIR: dataDir,
    FILES_LOG_LEVEL: 'warn',
    WEFT_RUNTIME_DIR: join(base, 'run'),
    ...extra,
  };
  const child = spawn(
    process.execPath,
    [
      '--conditions=weft-source',
      cli,
      'start',
      server,
      // The service's supervisor settings, as `npm start` uses them.
      '--config',
      new URL('../weft.config.mjs', import.meta.url).pathname,
      '--workers',
      String(workers),
      '--name',
      name,
      '--kill-timeout',
      '20s',
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const deadline = Date.now() + 60_000;
  while ((out.match(/"worker \d ready"/g) ?? []).length < workers) {
    if (child.exitCode !== null) throw new Error(`weft start exited with ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) throw new Error(`the cluster did not start within 60 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url: `http://127.0.0.1:${port}`, dataDir, name, env, child, exit, output: () => out };
}

export function weft(c: Cluster, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=weft-source', cli, ...args, '--name', c.name],
      { env: c.env, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * Polls `probe` until `done`; a failed probe counts as "not yet" (a keep-alive connection to a worker this test
 * killed is reset, and polling again reaches a live one). Fails naming `what`, with the last answer, after `ms`.
 */
export async function until<T>(
  probe: () => Promise<T>,
  done: (v: T) => boolean,
  ms: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (done(v)) return v;
      last = v;
    } catch (err) {
      last = String((err as { cause?: unknown }).cause ?? err);
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Outcome {
  status: number | string;
  id?: string;
  sha256?: string;
  sent: string;
  /** The error code of a refusal. */
  code?: string;
}

/** `loops` concurrent uploaders, each sending files one after another until `stop` aborts. */
export function uploadLoad(url: string, loops: number, stop: AbortSignal): Promise<Outcome[]> {
  const results: Outcome[] = [];
  const loop = async (l: number) => {
    for (let i = 0; !stop.aborted; i++) {
      const body = Buffer.from(
        `id,loop,i,pad\n${l},${l},${i},${'x'.repeat(2_000 + ((l * 31 + i * 17) % 50_000))}\n`,
      );
      const sent = createHash('sha256').update(body).digest('hex');
      try {
        const res = await fetch(`${url}/files?name=l${l}-${i}.csv`, { method: 'POST', body });
        const json = (await res.json()) as { id?: string; sha256?: string; error?: { code?: string } };
        results.push({
          status: res.status,
          sent,
          ...(json.id ? { id: json.id, sha256: json.sha256 } : {}),
          // A refusal says why (its error code), so a failed assertion shows it.
          ...(json.error?.code ? { code: json.error.code } : {}),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause;
        results.push({ status: cause?.code ?? (err as Error).message, sent });
        if (stop.aborted) return;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  return Promise.all(Array.from({ length: loops }, (_, l) => loop(l))).then(() => results);
}
