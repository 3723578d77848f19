/**
 * The storage port's error policy: a full disk (`ENOSPC`, `EDQUOT`) is reported as `ERR_WEFT_FILES_NO_SPACE`
 * (507, with the original as `cause`) rather than an anonymous 500, so clients and operators see what is wrong.
 * Deleting never needs space, so `DELETE /files/:id` still frees it.
 */
import { FilesError, isNoSpace } from '../errors.ts';
import type { Storage } from './types.ts';

function noSpace(err: unknown): unknown {
  if (!isNoSpace(err)) return err;
  return new FilesError(
    'ERR_WEFT_FILES_NO_SPACE',
    `No space left to store the file: ${(err as Error).message}`,
    {
      cause: err,
    },
  );
}

/**
 * Wraps a storage adapter once, at its port.
 *
 * @example
 * ```ts
 * const storage = reportNoSpace(new DiskStorage(dataDir));
 * await storage.put(key, body); // a full disk rejects with code ERR_WEFT_FILES_NO_SPACE
 * ```
 */
export function reportNoSpace(storage: Storage): Storage {
  const mapped =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      fn.apply(storage, args).catch((err: unknown) => {
        throw noSpace(err);
      });
  return {
    put: mapped(storage.put),
    putFile: mapped(storage.putFile),
    read: mapped(storage.read),
    stat: mapped(storage.stat),
    delete: mapped(storage.delete),
    localPath: mapped(storage.localPath),
    scratch: mapped(storage.scratch),
    init: mapped(storage.init),
    close: () => storage.close?.(),
  };
}
