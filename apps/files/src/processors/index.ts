/**
 * The processors as the job runner's main thread sees them: where the task module is, its type for a typed
 * `Pool`, and the error class. `loadSharp()` must run in the main thread before any pool thread loads sharp: on
 * glibc a native library first loaded by a worker thread is unloaded when that thread exits, crashing the process
 * (lovell/sharp#2263). It is loaded then, not at start-up, so a process that only receives uploads does not carry
 * libvips (about 25 MB of RSS).
 *
 * @example
 * ```ts
 * import { Pool } from 'weftjs/pool';
 * import { type ProcessorTasks, tasksUrl } from './processors/index.ts';
 * const pool = new Pool<ProcessorTasks>({ filename: tasksUrl, maxThreads: 2, env: { ...process.env, WEFT_THREADS: '2' } });
 * ```
 * @module
 */

let sharpLoaded: Promise<unknown> | undefined;

/** Loads sharp in this (the main) thread, once; call it before the pool starts a thread. */
export function loadSharp(): Promise<unknown> {
  sharpLoaded ??= import('sharp');
  return sharpLoaded;
}

/** The task module, for the pool's `filename`. */
// Compiled to `dist/`, this module is `index.js` and its tasks are `tasks.js`.
export const tasksUrl: URL = new URL(
  import.meta.url.endsWith('.ts') ? './tasks.ts' : './tasks.js',
  import.meta.url,
);

/** The task module's type, for `new Pool<ProcessorTasks>(...)`. */
export type ProcessorTasks = typeof import('./tasks.ts');

export type { CsvJobInput, CsvJobResult } from './csv.ts';
export { type CsvProblem, ProcessorError, type ProcessorErrorCode } from './errors.ts';
export type { DerivedOutput, ImageJobInput, ImageJobResult, ImageMetadata } from './images.ts';
