import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { within } from '../helpers.ts';

export interface RunningSupervisor {
  child: ChildProcess;
  port: number;
  lines: Record<string, unknown>[];
  exit: Promise<number | null>;
  /** Resolves with the first log line (already seen or to come) for which `match` is true. */
  line(
    match: (l: Record<string, unknown>) => boolean,
    what: string,
    ms?: number,
  ): Promise<Record<string, unknown>>;
}

const children = new Set<ChildProcess>();

/** Kills every supervisor (and, through its process group, its workers) a test started. */
export function killAll(): void {
  for (const c of children) {
    if (c.exitCode === null && c.pid) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {}
    }
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** Starts fixtures/supervisor.ts in its own process group. */
export async function startSupervisor(
  options: object = {},
  env: Record<string, string> = {},
): Promise<RunningSupervisor> {
  const port = await freePort();
  const script = new URL('./fixtures/supervisor.ts', import.meta.url).pathname;
  const child = spawn(
    process.execPath,
    [...process.execArgv.filter((a) => a.startsWith('--conditions')), script],
    {
      env: { ...process.env, ...env, PORT: String(port), WEFT_TEST_OPTIONS: JSON.stringify(options) },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    },
  );
  children.add(child);
  const lines: Record<string, unknown>[] = [];
  const waiters: {
    match: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  let buffered = '';
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let l: Record<string, unknown>;
      try {
        l = JSON.parse(text);
      } catch {
        l = { text };
      }
      lines.push(l);
      for (const w of [...waiters]) {
        if (w.match(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const line = (match: (l: Record<string, unknown>) => boolean, what: string, ms = 20_000) => {
    const seen = lines.find(match);
    if (seen) return Promise.resolve(seen);
    return within(
      new Promise<Record<string, unknown>>((resolve) => waiters.push({ match, resolve })),
      ms,
      what,
    );
  };
  return { child, port, lines, exit, line };
}

/** GET on a fresh connection; resolves with status and body, or the error code. */
export async function get(
  port: number,
  path: string,
): Promise<{ status: number; body: string } | { error: string }> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return { error: cause?.code ?? (err as Error).name };
  }
}
