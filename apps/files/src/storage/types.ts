/** Where the service keeps file bytes: local disk by default; the S3 adapter implements the same contract. */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  size: number;
  mtimeMs: number;
}

export interface Storage {
  /**
   * Streams `source` into the object `key`. The object appears only once all of it is durably written (a temp
   * file, fsync, rename), so a reader never sees half a file; on error nothing is left behind.
   */
  put(key: string, source: Readable, options?: { signal?: AbortSignal }): Promise<ObjectInfo>;
  /** Moves a finished local file (a processor's output) into `key`, replacing what was there. */
  putFile(key: string, path: string): Promise<ObjectInfo>;
  /** Bytes `start`..`end` (inclusive) of `key`, or all of it. */
  read(key: string, range?: { start: number; end: number }): Promise<Readable>;
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Removes `key`, or every key under `key/` when `prefix`. Missing keys are not an error. */
  delete(key: string, options?: { prefix?: boolean }): Promise<void>;
  /** A local path processors can read, and a function to call when done with it. */
  localPath(key: string): Promise<{ path: string; release(): Promise<void> }>;
  /** A fresh local directory for a job's outputs, removed by `release`. */
  scratch(name: string): Promise<{ dir: string; release(): Promise<void> }>;
  /** Prepares it (directories); called once before use. */
  init(): Promise<void>;
  /** Releases connections, when it holds any. */
  close?(): void;
}

export const originalKey = (fileId: string) => `originals/${fileId}`;
export const derivedKey = (fileId: string, name: string) => `derived/${fileId}/${name}`;
export const derivedPrefix = (fileId: string) => `derived/${fileId}`;
