/**
 * The task module the job runner's `weftjs/pool` threads load: every named function export is a task, so this file
 * exports the tasks and types only (a helper exported here would become callable as a task). The service runs every
 * processor, the built-in image and CSV ones included, through `runPlugin`, and `resizeImage` for
 * `GET /files/:id/image`; `processImage` and `ingestCsv` are the built-ins' work as tasks of their own, for a caller
 * that wants it without a job (the processor tests).
 *
 * Each thread reads two environment variables once, at load (pass them in the pool's `env`):
 * - `WEFT_THREADS`: the pool's thread count in this process (default: one per core);
 * - `WEFT_WORKERS`: the number of worker processes on the machine (default: 1);
 * and gives libvips max(1, floor(cores / (threads × workers))) threads, with its operation cache off.
 *
 * The main thread of a process that starts this pool must import `sharp` first (`./index.ts` does): on glibc,
 * a native library first loaded by a worker thread is unloaded when that thread exits, and the process crashes
 * (lovell/sharp#2263).
 *
 * @example
 * ```ts
 * import { Pool } from 'weftjs/pool';
 * import { type ProcessorTasks, tasksUrl } from './processors/index.ts';
 * const pool = new Pool<ProcessorTasks>({ filename: tasksUrl, maxThreads: 2, env: { ...process.env, WEFT_THREADS: '2' } });
 * const { outputs } = await pool.run('processImage', [{ input, outDir, limitInputPixels: 100_000_000 }]);
 * ```
 * @module
 */
export { type CsvJobInput, type CsvJobResult, ingestCsv } from './csv.ts';
export type { CsvProblem, ProcessorErrorCode } from './errors.ts';
export {
  type DerivedOutput,
  type ImageJobInput,
  type ImageJobResult,
  type ImageMetadata,
  processImage,
  type ResizeInput,
  type ResizeResult,
  resizeImage,
} from './images.ts';
export { type PluginJobInput, type PluginJobResult, runPlugin } from './run-plugin.ts';
