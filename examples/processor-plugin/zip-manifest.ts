/**
 * A processor plug-in for the file service, written outside it: for every uploaded ZIP, a manifest of its entries
 * (name, size, compressed size, CRC-32 and the SHA-256 of the bytes), stored as the output `zip-manifest.json`.
 * It reads the archive with yauzl (random access through the central directory, one entry at a time), so memory
 * stays flat whatever the archive's size, and it refuses archives that would unpack past `maxBytes` or hold more
 * than `maxEntries` entries (a ZIP bomb) with a permanent error, as it does a file that is not a ZIP.
 *
 * Registered by configuration (files.config.json beside it):
 *   { "processors": [{ "kind": "zip-manifest", "module": "./zip-manifest.ts", "match": ["application/zip"] }] }
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { defineProcessor } from 'weftjs-files/processor';
import yauzl from 'yauzl';

export interface ManifestOptions {
  /** Most bytes the entries may unpack to, in all. Default 1 GiB. */
  maxBytes?: number;
  /** Most entries. Default 10 000. */
  maxEntries?: number;
}

export interface ManifestEntry {
  name: string;
  size: number;
  compressedSize: number;
  crc32: string;
  sha256: string;
}

export interface ManifestResult {
  entries: number;
  bytes: number;
}

/** Stable codes: both are permanent (no retry makes a broken or oversized archive fit). */
const BAD_ZIP = 'ERR_ZIP_MANIFEST_BAD_ZIP';
const TOO_LARGE = 'ERR_ZIP_MANIFEST_TOO_LARGE';

function failure(code: string, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? {} : { cause }), { code });
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) =>
    yauzl.open(path, { lazyEntries: true, autoClose: false, strictFileNames: false }, (err, zip) =>
      err ? reject(failure(BAD_ZIP, `not a readable ZIP archive: ${err.message}`, err)) : resolve(zip),
    ),
  );
}

function entryStream(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  return new Promise((resolve, reject) =>
    zip.openReadStream(entry, (err, stream) =>
      err ? reject(failure(BAD_ZIP, `entry ${entry.fileName}: ${err.message}`, err)) : resolve(stream),
    ),
  );
}

/** Every entry of the archive in central-directory order, one at a time. */
async function* entriesOf(zip: yauzl.ZipFile): AsyncGenerator<yauzl.Entry> {
  for (;;) {
    const entry = await new Promise<yauzl.Entry | undefined>((resolve, reject) => {
      const onEntry = (e: yauzl.Entry) => settle(() => resolve(e));
      const onEnd = () => settle(() => resolve(undefined));
      const onError = (err: Error) =>
        settle(() => reject(failure(BAD_ZIP, `a broken archive: ${err.message}`, err)));
      const settle = (then: () => void) => {
        zip.off('entry', onEntry).off('end', onEnd).off('error', onError);
        then();
      };
      zip.on('entry', onEntry).on('end', onEnd).on('error', onError);
      zip.readEntry();
    });
    if (!entry) return;
    yield entry;
  }
}

export default defineProcessor<ManifestOptions, ManifestResult>({
  match: ['application/zip'],
  permanent: [BAD_ZIP, TOO_LARGE],
  async run({ kind, input, outDir, options, signal }) {
    const maxBytes = options.maxBytes ?? 1024 ** 3;
    const maxEntries = options.maxEntries ?? 10_000;
    const zip = await openZip(input);
    const entries: ManifestEntry[] = [];
    let bytes = 0;
    try {
      if (zip.entryCount > maxEntries) {
        throw failure(TOO_LARGE, `${zip.entryCount} entries, more than maxEntries (${maxEntries})`);
      }
      for await (const entry of entriesOf(zip)) {
        signal.throwIfAborted();
        if (entry.fileName.endsWith('/')) continue; // a folder
        // The declared size first (refused before reading), then what is actually read (a lying header).
        if (bytes + entry.uncompressedSize > maxBytes) {
          throw failure(TOO_LARGE, `the entries unpack to more than maxBytes (${maxBytes})`);
        }
        const hash = createHash('sha256');
        let read = 0;
        try {
          for await (const chunk of await entryStream(zip, entry)) {
            read += (chunk as Buffer).length;
            if (bytes + read > maxBytes) {
              throw failure(TOO_LARGE, `the entries unpack to more than maxBytes (${maxBytes})`);
            }
            hash.update(chunk as Buffer);
          }
        } catch (err) {
          if ((err as { code?: string }).code === TOO_LARGE || signal.aborted) throw err;
          // Inflating failed, or the bytes do not match the entry's size or CRC: the archive is broken.
          throw failure(BAD_ZIP, `entry ${entry.fileName}: ${(err as Error).message}`, err);
        }
        bytes += read;
        entries.push({
          name: entry.fileName,
          size: read,
          compressedSize: entry.compressedSize,
          crc32: entry.crc32.toString(16).padStart(8, '0'),
          sha256: hash.digest('hex'),
        });
      }
    } finally {
      zip.close();
    }
    const path = join(outDir, 'manifest.json');
    await writeFile(path, `${JSON.stringify({ entries }, null, 2)}\n`);
    return {
      outputs: [{ name: `${kind}.json`, path, type: 'application/json' }],
      result: { entries: entries.length, bytes },
    };
  },
});
