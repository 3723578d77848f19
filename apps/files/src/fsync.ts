/**
 * fsync shared by concurrent callers (group commit). A caller that wrote to a file or a directory and needs it on
 * disk asks for a sync of that path: when none is running, one starts at once; when one is running (it may have
 * started before this caller's write), one more starts as soon as it ends, shared by every caller that asked in the
 * meantime. So each caller's write is covered by a sync that started after it, and N concurrent writers to one
 * path cost about two fsyncs instead of N, none of them on the event loop.
 * @module
 */
import { open } from 'node:fs/promises';

interface PathState {
  running: Promise<void> | undefined;
  next: Promise<void> | undefined;
}

/**
 * @example
 * ```ts
 * const barrier = new SyncBarrier();
 * await rename(temp, join(dir, name));
 * await barrier.sync(dir); // the rename is on disk once this resolves
 * ```
 */
export class SyncBarrier {
  readonly #paths = new Map<string, PathState>();
  readonly #fsync: (path: string) => Promise<void>;

  /** `fsync`: how one path is synced (tests count or fail the calls). Default: open read-only, fsync, close. */
  constructor(fsync: (path: string) => Promise<void> = fsyncPath) {
    this.#fsync = fsync;
  }

  /** Resolves once a sync of `path` that started after this call has completed; rejects with its error. */
  sync(path: string): Promise<void> {
    let s = this.#paths.get(path);
    if (!s) {
      s = { running: undefined, next: undefined };
      this.#paths.set(path, s);
    }
    if (s.next) return s.next;
    if (!s.running) return this.#start(path, s);
    const running = s.running;
    s.next = running
      .catch(() => {})
      .then(() => {
        s.next = undefined;
        return this.#start(path, s);
      });
    return s.next;
  }

  #start(path: string, s: PathState): Promise<void> {
    const run = this.#fsync(path).finally(() => {
      if (s.running === run) s.running = undefined;
      if (!s.running && !s.next) this.#paths.delete(path);
    });
    s.running = run;
    return run;
  }
}

/** fsync of a file or a directory (Linux syncs a directory opened read-only). */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
