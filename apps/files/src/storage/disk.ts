/**
 * Local-disk storage under `<dataDir>/objects`, with temp files in `<dataDir>/tmp` on the same file system so the
 * final `rename` is atomic. Every worker process of the service shares the directory.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, mkdtemp, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { FilesError } from '../errors.ts';
import { SyncBarrier } from '../fsync.ts';
import type { ObjectInfo, Storage } from './types.ts';

/** Temp files older than this at start belong to a process that died mid-write. */
const STALE_TEMP_MS = 24 * 3_600_000;
/** Directory fsyncs of this process, shared by the objects committed into one folder at the same moment. */
const directories = new SyncBarrier();

export class DiskStorage implements Storage {
  readonly #root: string;
  readonly #tmp: string;
  /** Folders this process made or found: not asked for again (a rename into a removed one makes it again). */
  readonly #dirs = new Set<string>();

  constructor(dataDir: string) {
    this.#root = join(dataDir, 'objects');
    this.#tmp = join(dataDir, 'tmp');
  }

  /** Creates the directories and removes temp files left by processes that died long ago. */
  async init(now = Date.now()): Promise<void> {
    await mkdir(this.#root, { recursive: true });
    await mkdir(this.#tmp, { recursive: true });
    for (const name of await readdir(this.#tmp)) {
      const path = join(this.#tmp, name);
      const st = await stat(path).catch(() => undefined);
      if (st && now - st.mtimeMs > STALE_TEMP_MS) await rm(path, { recursive: true, force: true });
    }
  }

  #path(key: string): string {
    const path = join(this.#root, key);
    // Keys are made by the service from ids it generated; this guards against a bug ever escaping the root.
    if (!path.startsWith(this.#root + sep)) {
      throw new FilesError('ERR_WEFT_FILES_BAD_REQUEST', `Invalid storage key ${JSON.stringify(key)}`);
    }
    return path;
  }

  async put(key: string, source: Readable, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo> {
    const temp = join(this.#tmp, `${randomUUID()}.part`);
    const final = this.#path(key);
    try {
      const fh = await open(temp, 'wx');
      // Written, fsynced and measured through the one descriptor, closed before the rename.
      const info = await sealed(fh, () => writeAll(fh, source, options.signal));
      await this.#place(temp, final);
      return info;
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
  }

  async putFile(key: string, path: string): Promise<ObjectInfo> {
    const final = this.#path(key);
    const info = await sealed(await open(path, 'r+'), async () => {});
    await this.#place(path, final);
    return info;
  }

  /**
   * Renames a complete, fsynced file into place and fsyncs the directory (one fsync shared by the objects renamed
   * into that directory at the same moment): after a crash the object is whole or absent.
   */
  async #place(temp: string, final: string): Promise<void> {
    const dir = dirname(final);
    if (!this.#dirs.has(dir)) {
      await this.#makeDir(dir);
      // A bound on what is remembered: one folder per file's derived outputs would otherwise grow without end.
      if (this.#dirs.size >= 1_000) this.#dirs.clear();
      this.#dirs.add(dir);
    }
    try {
      await rename(temp, final);
    } catch (err) {
      // A folder known to exist was removed since (a file's derived outputs, deleted with it): make it again.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await this.#makeDir(dir);
      await rename(temp, final);
    }
    await directories.sync(dir);
  }

  /** Makes `dir` and the missing folders above it, each new one's entry fsynced in its parent. */
  async #makeDir(dir: string): Promise<void> {
    const made = await mkdir(dir, { recursive: true });
    if (made === undefined) return;
    // `made` is the topmost folder created; every one from it down to `dir` is new, so is its entry in its parent.
    for (let d = dir; ; d = dirname(d)) {
      await directories.sync(dirname(d));
      if (d === made || dirname(d) === d) break;
    }
  }

  async read(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const path = this.#path(key);
    // Open first, so a missing object is an error here and not on the stream after the headers went out.
    const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No object ${key}`);
      throw err;
    });
    return createReadStream(path, { fd: fh, ...(range ?? {}) });
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const st = await stat(this.#path(key)).catch(() => undefined);
    return st?.isFile() ? { size: st.size, mtimeMs: st.mtimeMs } : undefined;
  }

  async delete(key: string, options: { prefix?: boolean } = {}): Promise<void> {
    await rm(this.#path(key), { recursive: options.prefix === true, force: true });
  }

  async localPath(key: string): Promise<{ path: string; release(): Promise<void> }> {
    const path = this.#path(key);
    if (!(await this.stat(key))) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No object ${key}`);
    return { path, release: async () => {} };
  }

  async scratch(name: string): Promise<{ dir: string; release(): Promise<void> }> {
    const dir = await mkdtemp(join(this.#tmp, `${name.replace(/[^\w-]/g, '_')}-`));
    return { dir, release: () => rm(dir, { recursive: true, force: true }) };
  }
}

/**
 * Writes every chunk of `source` to `fh`. What `pipeline(source, write, { signal })` did, without the abort
 * controller it makes for each call and aborts at the end (an `AbortError` with a stack trace for every upload):
 * a failed write destroys `source` (leaving the loop returns its iterator), a failed `source` fails this, and
 * `signal` destroys `source` with an `AbortError`.
 */
async function writeAll(fh: FileHandle, source: Readable, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) {
    // Destroyed without an error: nothing listens to this stream yet, so an error event would be uncaught.
    source.destroy();
    throw abortError(signal);
  }
  const onAbort = () => source.destroy(abortError(signal!));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      // write(2) may take less than asked (a signal, a nearly full disk): the rest goes in the next call.
      for (let at = 0; at < chunk.length; ) at += (await fh.write(chunk, at)).bytesWritten;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function abortError(signal: AbortSignal): Error {
  return new DOMException('The operation was aborted', { name: 'AbortError', cause: signal.reason });
}

/**
 * Runs `write` on an open file, then fsyncs it and reads its size and time; closes it either way (a failure to close
 * after a failed write does not hide that write's error).
 */
async function sealed(fh: FileHandle, write: () => Promise<void>): Promise<ObjectInfo> {
  let info: ObjectInfo;
  try {
    await write();
    await fh.sync();
    const st = await fh.stat();
    info = { size: st.size, mtimeMs: st.mtimeMs };
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
  await fh.close();
  return info;
}
