/**
 * Local-disk storage under `<dataDir>/objects`, with temp files in `<dataDir>/tmp` on the same file system so the
 * final `rename` is atomic. Every worker process of the service shares the directory.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FilesError } from '../errors.ts';
import type { ObjectInfo, Storage } from './types.ts';

/** Temp files older than this at start belong to a process that died mid-write. */
const STALE_TEMP_MS = 24 * 3_600_000;

export class DiskStorage implements Storage {
  readonly #root: string;
  readonly #tmp: string;

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
    try {
      const out = createWriteStream(temp, { flags: 'wx' });
      await pipeline(source, out, options.signal ? { signal: options.signal } : {});
      return await this.#commit(temp, this.#path(key));
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
  }

  async putFile(key: string, path: string): Promise<ObjectInfo> {
    return this.#commit(path, this.#path(key));
  }

  /** fsync the data, rename into place, fsync the directory: after a crash the object is whole or absent. */
  async #commit(temp: string, final: string): Promise<ObjectInfo> {
    const fh = await open(temp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await mkdir(dirname(final), { recursive: true });
    await rename(temp, final);
    const dir = await open(dirname(final), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    const st = await stat(final);
    return { size: st.size, mtimeMs: st.mtimeMs };
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
