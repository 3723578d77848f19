import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * The reaping loop used when neither tini nor dumb-init is installed. `wait` in dash and bash blocks in
 * waitpid(-1), so it reaps every child, adopted orphans included, while it waits for weft; a trapped signal
 * interrupts the wait, is forwarded to weft, and the loop waits again until weft itself has exited.
 */
const SH_INIT = `"$@" &
child=$!
for s in TERM INT HUP USR2 QUIT; do trap "kill -$s $child 2>/dev/null" $s; done
while :; do
  wait $child
  code=$?
  kill -0 $child 2>/dev/null || break
done
exit $code`;

/** How `weft start` runs as PID 1: the init it re-executes under, or why it cannot. */
export type InitPlan =
  | { kind: 'exec'; file: string; args: string[]; init: string }
  | { kind: 'none'; reason: string };

/** Environment marker set on the weft that runs under the init, so it never tries again. */
export const INIT_ENV = 'WEFT_UNDER_INIT';

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Decides how to run `command` (the full command line of this weft, node first) when this process is PID 1.
 *
 * A container's PID 1 inherits every orphaned process and must reap it, or zombies pile up until the pid table is
 * full. Node cannot: libuv only waits on the pids it spawned, and there is no waitpid(-1) in Node. So weft replaces
 * itself (`process.execve`) with an init that can — tini or dumb-init when installed, else `/bin/sh` running a
 * reaping loop — which starts weft again as its child and forwards signals to it.
 */
export function planInit(
  command: string[],
  env: NodeJS.ProcessEnv,
  exists: (file: string) => boolean = executable,
): InitPlan {
  if (env[INIT_ENV] === '1') return { kind: 'none', reason: 'already running under an init' };
  if (env.WEFT_INIT === '0') return { kind: 'none', reason: 'WEFT_INIT=0' };
  for (const name of ['tini', 'dumb-init']) {
    const file = (env.PATH ?? '')
      .split(delimiter)
      .map((dir) => dir && join(dir, name))
      .find((f) => f && exists(f));
    if (file) return { kind: 'exec', file, args: [file, '--', ...command], init: name };
  }
  if (exists('/bin/sh')) {
    return {
      kind: 'exec',
      file: '/bin/sh',
      args: ['/bin/sh', '-c', SH_INIT, 'weft-init', ...command],
      init: 'sh',
    };
  }
  return { kind: 'none', reason: 'no tini, dumb-init or /bin/sh to reap orphaned processes' };
}

/**
 * When this process is PID 1 on Linux, re-executes it under an init that reaps orphans (see `planInit`); returns
 * only when it does not (not PID 1, opted out with `WEFT_INIT=0`, or nothing to run), with the reason to log.
 */
export function becomeInitChild(): string | undefined {
  if (process.platform !== 'linux' || process.pid !== 1) return undefined;
  const command = [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
  const plan = planInit(command, process.env);
  if (plan.kind === 'none') return plan.reason;
  if (typeof process.execve !== 'function') return 'this Node has no process.execve (needs 22.15 or later)';
  process.execve(plan.file, plan.args, { ...process.env, [INIT_ENV]: '1' });
  return undefined; // not reached: execve replaces the process
}
