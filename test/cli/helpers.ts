import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { within } from '../helpers.ts';

/** The weft command (TypeScript source), the cluster fixture app, and the source condition to run them with. */
export const cli = new URL('../../src/cli/weft.ts', import.meta.url).pathname;
export const app = new URL('../cluster/fixtures/app.ts', import.meta.url).pathname;
export const conditions = process.execArgv.filter((a) => a.startsWith('--conditions'));

export interface StartedWeft {
  child: ChildProcess;
  exit: Promise<number | null>;
  /** What it wrote to stdout so far. */
  output(): string;
}

const started = new Set<ChildProcess>();

/** Kills (by process group) every `weft start` a test file started; for its `after()`. */
export function killStarted(): void {
  for (const c of started) {
    if (c.exitCode === null && c.pid) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {}
    }
  }
}

/**
 * Runs `command` (`[file, ...args]`, by default Node running `weft start ...`) in its own process group and resolves
 * once the supervisor says its control socket is up; fails with its output if it exits first or after 30 s.
 */
export async function startWeft(
  args: string[],
  options: { env: NodeJS.ProcessEnv; cwd?: string; command?: string[] },
): Promise<StartedWeft> {
  const [file, ...prefix] = options.command ?? [process.execPath];
  const child = spawn(file!, [...prefix, ...conditions, cli, 'start', ...args], {
    env: options.env,
    cwd: options.cwd ?? process.cwd(),
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  started.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  await within(
    new Promise<void>((resolve, reject) => {
      const poll = () => (out.includes('control socket') ? resolve() : setTimeout(poll, 20));
      child.once('exit', (c) => reject(new Error(`weft start exited with ${c}: ${out}`)));
      poll();
    }),
    30_000,
    'weft start to open its control socket',
  );
  return { child, exit, output: () => out };
}

/** Runs `weft <args>` to completion with `env`. */
export function runWeft(
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd = process.cwd(),
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...conditions, cli, ...args],
      { env, cwd, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}
