/**
 * Typed errors of the processors. Each has a stable `code`, so the job runner branches on `err.code`, never on
 * message text; thrown in a pool thread, an error reaches the caller with its name, message, code, cause and own
 * enumerable properties (`problems` here), but as a plain `Error` named `ProcessorError`, so match on `code`.
 * @module
 */
import { stat } from 'node:fs/promises';

/** Every code the processors throw. */
export type ProcessorErrorCode =
  /** The input is not a readable image of a supported format: corrupt, truncated, forged or unsupported. */
  | 'ERR_WEFT_FILES_BAD_IMAGE'
  /** The image header declares more pixels than `limitInputPixels`; nothing was decoded. */
  | 'ERR_WEFT_FILES_PIXEL_LIMIT'
  /** The stored input file does not exist (or is not a file). */
  | 'ERR_WEFT_FILES_INPUT_MISSING'
  /** A job input field is invalid (a bug in the caller, not in the user's file). */
  | 'ERR_WEFT_FILES_INVALID_ARGUMENT'
  /** The CSV file has no header row. */
  | 'ERR_WEFT_FILES_CSV_EMPTY'
  /** The CSV header has more columns than the database allows in a table (SQLite 1999, PostgreSQL 1599). */
  | 'ERR_WEFT_FILES_CSV_TOO_MANY_COLUMNS'
  /** More malformed rows than `maxBadRows`; `problems` lists the first ones. */
  | 'ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS'
  /** A CSV syntax error the parser cannot resume after (a record over the size cap, mostly a stray quote). */
  | 'ERR_WEFT_FILES_CSV_MALFORMED'
  /** More records do not fit the header than do, under the best dialect found: not a table; `problems` says where. */
  | 'ERR_WEFT_FILES_CSV_INCONSISTENT'
  /** UTF-8 text followed by bytes that are not UTF-8: a file mixing encodings. */
  | 'ERR_WEFT_FILES_CSV_ENCODING';

/** One problem in a CSV file: the 1-based line where the record starts, and why it was rejected. */
export interface CsvProblem {
  line: number;
  reason: string;
}

/** Options of {@link ProcessorError}. */
export interface ProcessorErrorOptions {
  cause?: unknown;
  /** For CSV errors: the first problems found, so the user sees why the file was rejected. */
  problems?: CsvProblem[];
}

/**
 * The error every processor throws on purpose.
 *
 * @example
 * ```ts
 * try { await pool.run('processImage', [job]); }
 * catch (err) { if ((err as { code?: string }).code === 'ERR_WEFT_FILES_BAD_IMAGE') markFailedForGood(job); }
 * ```
 */
export class ProcessorError extends Error {
  override name = 'ProcessorError';
  readonly code: ProcessorErrorCode;
  /** Set on CSV errors only. */
  declare readonly problems?: CsvProblem[];

  constructor(code: ProcessorErrorCode, message: string, options: ProcessorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    // An own enumerable property only when there is something to say: it crosses the thread boundary as is.
    if (options.problems !== undefined)
      Object.defineProperty(this, 'problems', { value: options.problems, enumerable: true });
  }
}

/**
 * Throws `ERR_WEFT_FILES_INPUT_MISSING` unless `path` is a file. The libraries report a missing file their own way
 * (sharp: a plain Error with no code), so the runner gets one typed error for "the stored file is gone" instead.
 *
 * @example
 * ```ts
 * await requireInputFile(job.input, 'image');
 * ```
 */
export async function requireInputFile(path: string, kind: string): Promise<void> {
  const info = await stat(path).catch((err: unknown) => {
    if (hasCode(err, 'ENOENT') || hasCode(err, 'ENOTDIR')) return undefined;
    throw err;
  });
  if (info === undefined || !info.isFile()) {
    throw new ProcessorError('ERR_WEFT_FILES_INPUT_MISSING', `The stored ${kind} does not exist`);
  }
}

function hasCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
