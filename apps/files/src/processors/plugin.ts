/**
 * Processor plug-ins: a module the configuration names (`processors` in `files.config.json`), whose `run` the
 * service calls in its `weftjs/pool` threads for every upload whose sniffed type it matches, with the same leases,
 * retries, dead letters, events, metrics and dashboard as the built-in image and CSV jobs. Its outputs are stored
 * through the storage port and served under `/files/:id/derived/`.
 *
 * This module is what a plug-in imports (`weftjs-files/processor`): `defineProcessor` and the types. It imports
 * nothing else, so loading it in a thread costs nothing.
 *
 * @example
 * ```ts
 * import { createHash } from 'node:crypto';
 * import { readFile, writeFile } from 'node:fs/promises';
 * import { join } from 'node:path';
 * import { defineProcessor } from 'weftjs-files/processor';
 *
 * export default defineProcessor({
 *   match: ['text/plain'],
 *   async run({ input, outDir, kind }) {
 *     const text = await readFile(input, 'utf8');
 *     const path = join(outDir, 'words.json');
 *     await writeFile(path, JSON.stringify({ words: text.split(/\s+/).filter(Boolean).length }));
 *     return { outputs: [{ name: `${kind}.json`, path, type: 'application/json' }], result: { ok: true } };
 *   },
 * });
 * ```
 * @module
 */

/** The uploaded file a processor works on, as recorded. */
export interface ProcessorFile {
  id: string;
  /** The sanitized name it was uploaded with. */
  name: string;
  /** The type sniffed from its bytes (never the client's word). */
  type: string;
  size: number;
  /** Hex SHA-256 of its bytes. */
  sha256: string;
}

/** What `run` is given. */
export interface ProcessorContext<Options = unknown> {
  /** The processor's kind, as configured (its jobs' `kind`; its outputs' names start with it). */
  kind: string;
  file: ProcessorFile;
  /** A local path to read the file's bytes from (a copy, with remote storage). Read-only. */
  input: string;
  /** An empty directory of this job's own for the outputs; removed once they are stored. */
  outDir: string;
  /** The `options` of its configuration entry (JSON), or `{}`. */
  options: Options;
  /**
   * Aborted when the job is cancelled, its timeout passes or the service stops: stop early and throw. (A task that
   * never awaits is left to finish; its result is dropped.)
   */
  signal: AbortSignal;
  /** Which attempt this is, from 1. */
  attempt: number;
}

/** One file a processor made, stored as `/files/:id/derived/<name>`. */
export interface ProcessorOutput {
  /**
   * Its name under the file's outputs: the processor's kind, or the kind followed by `.` or `-` and more (`zip-
   * manifest.json` for kind `zip-manifest`), in letters, digits, `.`, `_` and `-`, at most 100 characters.
   */
  name: string;
  /** Where `run` wrote it: a file inside `outDir`. */
  path: string;
  /** Its media type, as served. */
  type: string;
  /** Pixel size, for images. */
  width?: number;
  height?: number;
}

/** What `run` returns. */
export interface ProcessorResult<Result = unknown> {
  outputs?: ProcessorOutput[];
  /** Kept as the job's `result` (JSON: the job's page, webhooks and events show it). */
  result?: Result;
}

/** A processor module's default export: what {@link defineProcessor} returns. */
export interface ProcessorDefinition<Options = unknown, Result = unknown> {
  /**
   * The sniffed types it processes, when its configuration entry gives none: MIME types, `type/*` or `*\/*`, or a
   * predicate on the sniffed type (run in the service's main thread).
   */
  match?: readonly string[] | ((type: string) => boolean);
  /**
   * Processes one file. Throw to fail the attempt: an error whose `code` is in `permanent` dead-letters the job at
   * once; any other is retried after a backoff until `maxAttempts`.
   */
  run(context: ProcessorContext<Options>): ProcessorResult<Result> | Promise<ProcessorResult<Result>>;
  /** Error codes that no retry can mend (a corrupt input, an unsupported variant). */
  permanent?: readonly string[];
}

/** Marks a definition made by {@link defineProcessor}, so a module exporting something else is refused at start. */
export const PROCESSOR: unique symbol = Symbol.for('weftjs-files.processor');

/**
 * Declares a processor: the default export of a plug-in module, typed by its options and result. Refuses a
 * definition without `run` (`TypeError`, at import, so the service's start names the module).
 *
 * @example
 * ```ts
 * export default defineProcessor<{ algorithm: string }, { entries: number }>({
 *   match: ['application/zip'],
 *   async run({ input, options }) { return { result: { entries: await count(input, options.algorithm) } }; },
 * });
 * ```
 */
export function defineProcessor<Options = unknown, Result = unknown>(
  definition: ProcessorDefinition<Options, Result>,
): ProcessorDefinition<Options, Result> {
  if (typeof definition?.run !== 'function') throw new TypeError('defineProcessor: `run` must be a function');
  const { match, permanent } = definition;
  if (match !== undefined && typeof match !== 'function' && !isTypeList(match)) {
    throw new TypeError('defineProcessor: `match` must be an array of MIME types or a function of the type');
  }
  if (
    permanent !== undefined &&
    !(Array.isArray(permanent) && permanent.every((c) => typeof c === 'string'))
  ) {
    throw new TypeError('defineProcessor: `permanent` must be an array of error codes');
  }
  return Object.freeze({ ...definition, [PROCESSOR]: true });
}

/** `image/png`, `image/*`, `*\/*`: a MIME type or a pattern of one. */
const TYPE_PATTERN = /^(?:\*\/\*|[a-z0-9][a-z0-9!#$&^_.+-]*\/(?:\*|[a-z0-9][a-z0-9!#$&^_.+-]*))$/;

export function isTypeList(value: unknown): value is readonly string[] {
  return Array.isArray(value) && value.every((t) => typeof t === 'string' && TYPE_PATTERN.test(t));
}

/** Whether `type` is one of `patterns` (`type/*` and `*\/*` match as wildcards). */
export function typeMatches(patterns: readonly string[], type: string): boolean {
  const major = type.slice(0, type.indexOf('/'));
  return patterns.some((p) => p === type || p === '*/*' || (p.endsWith('/*') && p.slice(0, -2) === major));
}
