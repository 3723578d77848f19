/**
 * The supervisor's word that a worker may stop accepting. Internal, shared by weft/lifecycle and the weft agent.
 *
 * One Ctrl-C, a `kill` of the process group or systemd's stop signals every process of a supervised service at once.
 * A worker that stopped accepting before the supervisor closed the shared listening socket would leave the
 * connections the supervisor accepted meanwhile to no one: node:cluster closes them, and a client that had sent its
 * request on one sees a reset. So a supervised worker keeps accepting after a stop signal until its supervisor says
 * so: the supervisor sends `{ weft: 'drain' }` once its listening sockets are closed (a stop) or when it retires this
 * worker (a reload, a restart), just before its SIGTERM. A fixed delay in the worker (100 ms, then a 1 s wait for the
 * word) is too short for a supervisor that a busy machine, or a garbage collection, holds back for longer: the
 * supervisor decides, after reading the signals pending for it.
 *
 * The agent (loaded into every supervised worker) installs the word on `globalThis`, under a registered symbol: the
 * lifecycle cannot import the agent (weft/lifecycle does not depend on weft/cluster), and a process may hold two
 * copies of the package.
 */

/**
 * The longest a supervised worker waits for its supervisor's word after a stop signal, ms. The worker asks for it
 * (`{ weft: 'stopping' }`) and the supervisor always answers: once its listening sockets are closed on a stop of its
 * own, or, for a signal sent to that worker alone, after a second without one (cluster/words.ts). This bound is for a
 * supervisor that cannot answer at all; one that is gone closes the channel, which ends the wait too.
 */
export const SUPERVISOR_WORD_TIMEOUT = 10_000;

const KEY = Symbol.for('weft.supervisor.drain');

/** What the agent installs. */
export interface SupervisorWord {
  /** Resolves once the supervisor said the worker may stop accepting, the IPC channel closed, or after `maxMs`. */
  wait(maxMs: number): Promise<void>;
}

/** Installs the word (the agent does, once). */
export function installSupervisorWord(word: SupervisorWord): void {
  (globalThis as Record<symbol, unknown>)[KEY] = word;
}

/** The word, in a worker run by the weft supervisor with its agent; undefined elsewhere. */
export function supervisorWord(): SupervisorWord | undefined {
  return (globalThis as Record<symbol, unknown>)[KEY] as SupervisorWord | undefined;
}
