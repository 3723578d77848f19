/**
 * The processors as the job runner's main thread sees them: where the task module is, its type for a typed
 * `Pool`, and the error class. Importing this file loads `sharp` in the main thread, which must happen before any
 * pool thread loads it: on glibc a native library first loaded by a worker thread is unloaded when that thread
 * exits, crashing the process (lovell/sharp#2263).
 *
 * @example
 * ```ts
 * import { Pool } from 'weft/pool';
 * import { type ProcessorTasks, tasksUrl } from './processors/index.ts';
 * const pool = new Pool<ProcessorTasks>({ filename: tasksUrl, maxThreads: 2, env: { ...process.env, WEFT_THREADS: '2' } });
 * ```
 * @module
 */
import 'sharp';

/** The task module, for the pool's `filename`. */
export const tasksUrl: URL = new URL('./tasks.ts', import.meta.url);

/** The task module's type, for `new Pool<ProcessorTasks>(...)`. */
export type ProcessorTasks = typeof import('./tasks.ts');

export type { CsvJobInput, CsvJobResult } from './csv.ts';
export { type CsvProblem, ProcessorError, type ProcessorErrorCode } from './errors.ts';
export type { DerivedOutput, ImageJobInput, ImageJobResult, ImageMetadata } from './images.ts';
