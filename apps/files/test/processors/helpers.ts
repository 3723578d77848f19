/**
 * Shared by the processor tests: temp folders, a pool on the real task module, and a hand-built PNG header.
 * Loads sharp in the main thread before any pool thread does (glibc: lovell/sharp#2263).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { Pool, type PoolOptions } from 'weftjs/pool';
import { loadSharp, type ProcessorTasks, tasksUrl } from '../../src/processors/index.ts';

await loadSharp();

/** A fresh temp folder; `cleanup()` removes it and everything in it. */
export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `weft-files-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A pool of 2 threads on the processors' task module, told it has 2 threads (for libvips' share of cores). */
export function processorPool(options: Partial<PoolOptions> = {}): Pool<ProcessorTasks> {
  return new Pool<ProcessorTasks>({
    filename: tasksUrl,
    minThreads: 0,
    maxThreads: 2,
    env: { ...process.env, WEFT_THREADS: '2', WEFT_WORKERS: '1' },
    ...options,
  });
}

/** Every wait in these tests is bounded: a task that hangs fails the test instead of holding it. */
export const TASK_TIMEOUT = { timeout: 60_000 };

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A valid PNG file claiming `width`×`height` 8-bit RGB pixels, with one tiny IDAT: a decompression bomb as the
 * header sees it, a few dozen bytes on disk.
 */
export function pngHeader(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([
    signature,
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(1))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Resolves to the rejection of `promise`, failing if it resolves. */
export async function rejection(
  promise: Promise<unknown>,
): Promise<Error & { code?: string; problems?: unknown }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string; problems?: unknown };
  }
  throw new Error('expected a rejection, but the promise resolved');
}
