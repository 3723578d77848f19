/**
 * The CSV processor: streams a CSV file through csv-parse into a SQLite or PostgreSQL table, batch by batch, with
 * bad rows counted and skipped, and the table replaced atomically at the end so a re-run never duplicates rows.
 * @module
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { type CsvError, type InfoRecord, type Options, type Parser, parse } from 'csv-parse';
import type { TaskContext } from 'weftjs/pool/task';
import { batch } from 'weftjs/stream';
import { sanitiseColumns } from './columns.ts';
import { isPostgresUrl } from './database-url.ts';
import { CsvDecoder, type CsvDialect, decodeSample, detectDelimiter, SAMPLE_BYTES } from './dialect.ts';
import { type CsvProblem, ProcessorError, requireInputFile } from './errors.ts';
import { openDatabase, quoteIdent, type StagedRow, StagingTable } from './tables/sqlite.ts';

/** Input of `ingestCsv`. */
export interface CsvJobInput {
  /**
   * Absolute path of the stored CSV, first row the header. Its dialect is detected: UTF-8 (with or without BOM),
   * UTF-16 LE/BE with BOM, else Latin-1; comma, semicolon, tab or pipe; `"` or `'` quotes.
   */
  input: string;
  /**
   * Where the table goes: the path of a SQLite database file (used in WAL mode by other processes at the same
   * time), or a `postgres://` / `postgresql://` URL (the table goes to the first schema on its `search_path`).
   */
  database: string;
  /** Target table, `[a-z_][a-z0-9_]*`, at most 54 characters (`__staging` is appended while loading). */
  table: string;
  /** Malformed rows tolerated; one more fails the job. */
  maxBadRows: number;
  /** Rows per INSERT transaction. Default: 1000. */
  batchSize?: number;
}

/** Result of `ingestCsv`. */
export interface CsvJobResult {
  table: string;
  /** The data columns (text), sanitised from the header, in file order. The table also has `_line` (integer) first. */
  columns: string[];
  /** Rows loaded. */
  rows: number;
  /** Malformed rows skipped (an unclosed quote counts every line it swallowed). */
  badRows: number;
  /** The first few problems, for the user: line number and reason. */
  problems: CsvProblem[];
  /** How the file was read: encoding, BOM, delimiter and quote. */
  dialect: CsvDialect;
}

/** Problems kept for the user; the count goes on. */
const MAX_PROBLEMS = 20;
/** Data columns at most: one more is `_line`, and SQLite's default SQLITE_MAX_COLUMN is 2000. */
const MAX_COLUMNS = 1999;
/** PostgreSQL allows 1600 columns in a table. */
const MAX_COLUMNS_PG = 1599;
/**
 * A record this long is almost always a stray quote swallowing the rest of the file; capping it bounds memory.
 * csv-parse cannot resume after this error (the rest of the file is silently dropped), so it fails the job.
 */
const MAX_RECORD_BYTES = 1024 * 1024;
const TABLE_NAME = /^[a-z_][a-z0-9_]{0,53}$/;

/**
 * Loads a CSV file into `table` of `database` (a SQLite file, or a PostgreSQL database through one connection of
 * its own). The file is streamed: each batch is written before the next is read, so memory does not grow with
 * its size. Rows whose field count differs from the header's, or that the parser rejects, are skipped and
 * counted; a file with more of those than good rows is not a table under any dialect tried, and fails. Throws
 * `ProcessorError` `ERR_WEFT_FILES_CSV_EMPTY`, `ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS` (with `problems`),
 * `ERR_WEFT_FILES_CSV_INCONSISTENT` (with `problems`), `ERR_WEFT_FILES_CSV_ENCODING`, `ERR_WEFT_FILES_CSV_MALFORMED`, `ERR_WEFT_FILES_CSV_TOO_MANY_COLUMNS` (over 1999 columns, 1599 in
 * PostgreSQL), `ERR_WEFT_FILES_INPUT_MISSING` or `ERR_WEFT_FILES_INVALID_ARGUMENT`; database errors (a lock held
 * longer than 5 s, PostgreSQL unreachable) pass through. On any failure the target table is left as it was and no
 * staging table remains. Stops early when the task is cancelled.
 *
 * @example
 * ```ts
 * const result = await pool.run('ingestCsv', [{ input, database, table: 'csv_3f2a', maxBadRows: 100 }]);
 * ```
 */
// biome-ignore lint/suspicious/noConfusingVoidType: `this` is void in a direct call, a TaskContext in a pool thread.
export async function ingestCsv(this: TaskContext | void, job: CsvJobInput): Promise<CsvJobResult> {
  return loadCsv(job, (this as TaskContext | undefined)?.signal);
}

/**
 * What {@link ingestCsv} does, outside the pool's task convention: `signal` stops the load (the built-in CSV
 * processor passes its job's).
 */
export async function loadCsv(job: CsvJobInput, signal?: AbortSignal): Promise<CsvJobResult> {
  const batchSize = checkJob(job);
  await requireInputFile(job.input, 'CSV');
  const dialect = await detectDialect(job.input);
  const decoder = new CsvDecoder(dialect.encoding);
  const sink = await openSink(job.database, job.table);
  const filter = new RowFilter(job.maxBadRows, sink.maxColumns);
  let staging: Staging | undefined;
  try {
    let loaded = 0;
    await pipeline(
      createReadStream(job.input),
      decoder,
      csvParser(filter, dialect),
      batch<StagedRow>({ size: batchSize }),
      async (batches: AsyncIterable<StagedRow[]>) => {
        for await (const good of batches) {
          staging ??= await sink.stage(filter.columns);
          await staging.insert(good);
          loaded += good.length;
        }
      },
      signal === undefined ? {} : { signal },
    );
    if (!filter.hasHeader)
      throw new ProcessorError('ERR_WEFT_FILES_CSV_EMPTY', 'the CSV file has no header row');
    dialect.encoding = decoder.encoding;
    if (filter.bad > loaded) throw inconsistent(filter, loaded, dialect);
    staging ??= await sink.stage(filter.columns);
    await staging.publish();
    return {
      table: job.table,
      columns: filter.columns,
      rows: loaded,
      badRows: filter.bad,
      problems: filter.problems,
      dialect,
    };
  } catch (err) {
    // After a cancellation an insert may still be running: a PostgreSQL client runs its queries in order, so the
    // drop comes after it. The job fails with its own error; a staging table left behind is dropped by the next run.
    await sink.discard().catch(() => {});
    throw err;
  } finally {
    await sink.close();
  }
}

/** A staging table being filled: `StagingTable` (SQLite) or `PgStagingTable`. */
interface Staging {
  insert(rows: readonly StagedRow[]): void | Promise<void>;
  publish(): void | Promise<void>;
}

/** The database a job loads into, through one connection of its own. */
interface Sink {
  readonly maxColumns: number;
  /** Creates the empty staging table for `columns` (dropping one an earlier run left). */
  stage(columns: readonly string[]): Promise<Staging>;
  /** Drops the staging table. */
  discard(): Promise<void>;
  close(): Promise<void>;
}

/** Connects to `database`, a SQLite file path or a PostgreSQL URL. */
async function openSink(database: string, table: string): Promise<Sink> {
  if (isPostgresUrl(database)) {
    // pg is loaded by the threads that write to PostgreSQL only (each pool thread would carry it otherwise).
    const { connectPg, PgStagingTable } = await import('./tables/pg.ts');
    const client = await connectPg(database);
    return {
      maxColumns: MAX_COLUMNS_PG,
      stage: async (columns) => {
        const staging = new PgStagingTable(client, table, columns);
        await staging.create();
        return staging;
      },
      discard: () => new PgStagingTable(client, table, []).discard(),
      close: () => client.end(),
    };
  }
  const db = openDatabase(database);
  return {
    maxColumns: MAX_COLUMNS,
    stage: async (columns) => {
      const staging = new StagingTable(db, table, columns);
      staging.create();
      return staging;
    },
    discard: async () => db.exec(`DROP TABLE IF EXISTS ${quoteIdent(`${table}__staging`)}`),
    close: async () => db.close(),
  };
}

/** The dialect of the file at `path`, from its first {@link SAMPLE_BYTES} bytes. */
async function detectDialect(path: string): Promise<CsvDialect> {
  const file = await open(path);
  try {
    const head = Buffer.alloc(SAMPLE_BYTES);
    const { bytesRead } = await file.read(head, 0, SAMPLE_BYTES, 0);
    const sample = decodeSample(head.subarray(0, bytesRead), bytesRead < SAMPLE_BYTES);
    return { encoding: sample.encoding, bom: sample.bom, ...detectDelimiter(sample.text) };
  } finally {
    await file.close();
  }
}

const DELIMITER_NAMES = { ',': 'comma', ';': 'semicolon', '\t': 'tab', '|': 'pipe' } as const;

function inconsistent(filter: RowFilter, loaded: number, dialect: CsvDialect): ProcessorError {
  return new ProcessorError(
    'ERR_WEFT_FILES_CSV_INCONSISTENT',
    `The CSV file does not parse into consistent columns: ${filter.bad} records do not fit the header's ` +
      `${filter.columns.length} columns and only ${loaded} do (read as ${DELIMITER_NAMES[dialect.delimiter]}-` +
      `separated ${dialect.encoding}, quote ${dialect.quote}, the best of comma, semicolon, tab and pipe); nothing was loaded`,
    { problems: filter.problems },
  );
}

/** A csv-parse stream whose records go through `filter`: what comes out are the good rows, in file order. */
function csvParser(filter: RowFilter, dialect: CsvDialect): Parser {
  const options: Options<StagedRow, string[]> = {
    // The decoder before it already dropped any BOM and made the text UTF-8.
    delimiter: dialect.delimiter,
    quote: dialect.quote,
    escape: dialect.quote,
    // Only left-trimming in the parser: with rtrim, csv-parse 6 silently drops every record after a
    // "non trimable char after closing quote" error. Right-trimming is done on the values instead.
    ltrim: true,
    relax_quotes: true,
    relax_column_count: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    max_record_size: MAX_RECORD_BYTES,
    on_record: (record: string[], context: InfoRecord) => filter.record(record, context),
    on_skip: (err: CsvError | undefined) => {
      filter.skip(err, parser.info);
      return undefined;
    },
  };
  // csv-parse's typings let `on_record` change the record type only together with `columns`; at run time it
  // may return anything, here a `StagedRow` or null to drop the record.
  const parser: Parser = parse(options as unknown as Options);
  return parser;
}

/** Validates the job; returns the batch size. */
function checkJob(job: CsvJobInput): number {
  if (typeof job !== 'object' || job === null) invalid('the job input must be an object');
  if (typeof job.input !== 'string' || job.input === '') invalid('"input" must be a file path');
  if (typeof job.database !== 'string' || job.database === '')
    invalid('"database" must be a SQLite file path or a postgres:// URL');
  // The name is interpolated into SQL (quoted); the runner already makes it safe, this is the second lock.
  if (typeof job.table !== 'string' || !TABLE_NAME.test(job.table) || job.table.startsWith('sqlite_')) {
    invalid(
      `"table" must match ${TABLE_NAME} and not start with "sqlite_", got ${JSON.stringify(job.table)}`,
    );
  }
  if (!Number.isSafeInteger(job.maxBadRows) || job.maxBadRows < 0)
    invalid('"maxBadRows" must be an integer >= 0');
  const size = job.batchSize ?? 1000;
  if (!Number.isSafeInteger(size) || size < 1 || size > 100_000)
    invalid('"batchSize" must be an integer 1..100000');
  return size;
}

function invalid(message: string): never {
  throw new ProcessorError('ERR_WEFT_FILES_INVALID_ARGUMENT', `ingestCsv: ${message}`);
}

/** Where the parser is in the file: what `on_skip` needs to know the line a rejected record started on. */
interface ParserPosition {
  readonly lines: number;
  readonly empty_lines: number;
}

/**
 * Runs inside the parser, in file order: takes the header, turns good records into rows, counts and describes
 * bad ones, and throws (failing the parse) once there are more than `maxBadRows`.
 */
class RowFilter {
  columns: string[] = [];
  hasHeader = false;
  bad = 0;
  problems: CsvProblem[] = [];
  #maxBad: number;
  #maxColumns: number;
  #width = 0;
  // End line and empty-line count after the previous record: csv-parse reports the line a record ends on, and
  // a record starts after the previous one plus the empty lines between them.
  #lastLine = 0;
  #lastEmpty = 0;
  // csv-parse counts a CRLF inside a quoted field as two lines; this many extra lines have been seen so far.
  #extraLines = 0;

  constructor(maxBad: number, maxColumns: number) {
    this.#maxBad = maxBad;
    this.#maxColumns = maxColumns;
  }

  record(record: string[], position: ParserPosition): StagedRow | null {
    const line = this.#advance(position, record);
    if (!this.hasHeader) {
      const header = record.map((cell) => cell.trimEnd());
      // A line of separators or spaces is not a header.
      if (header.every((cell) => cell === '')) return null;
      if (header.length > this.#maxColumns) {
        throw new ProcessorError(
          'ERR_WEFT_FILES_CSV_TOO_MANY_COLUMNS',
          `The CSV header has ${header.length} columns; at most ${this.#maxColumns} are supported`,
        );
      }
      this.columns = sanitiseColumns(header);
      this.#width = header.length;
      this.hasHeader = true;
      return null;
    }
    if (record.length !== this.#width) {
      this.#bad(line, 1, `expected ${this.#width} fields, found ${record.length}`);
      return null;
    }
    const row: StagedRow = [line];
    for (const value of record) row.push(value.trimEnd());
    return row;
  }

  skip(err: CsvError | undefined, position: ParserPosition): void {
    const line = this.#advance(position);
    if (err?.code === 'CSV_MAX_RECORD_SIZE') {
      throw new ProcessorError(
        'ERR_WEFT_FILES_CSV_MALFORMED',
        `Line ${line}: a record longer than ${MAX_RECORD_BYTES} bytes, probably an unclosed quote; the rest of the file cannot be read`,
        { cause: err, problems: [...this.problems, { line, reason: 'record too long (unclosed quote?)' }] },
      );
    }
    if (err?.code === 'CSV_QUOTE_NOT_CLOSED') {
      // Only happens at the end of the file: every line from the opening quote on was read as one field, so
      // count them all, lest a quote near the top pass as one bad row while most of the file is lost. (In a
      // CRLF file the count is high: csv-parse counts each CRLF inside the quote twice.)
      const lines = this.#lastLine - line + 1;
      this.#bad(line, lines, `unclosed quote: lines ${line} to ${this.#lastLine} (end of file) skipped`);
      return;
    }
    this.#bad(line, 1, err?.message ?? 'unreadable record');
  }

  /** Returns the line the current record starts on, and remembers where it ends. */
  #advance(position: ParserPosition, fields?: readonly string[]): number {
    const line = this.#lastLine + 1 + (position.empty_lines - this.#lastEmpty);
    // Only a record spanning lines can hold a line break; the fields of a skipped one are unknown.
    if (fields !== undefined && position.lines - this.#extraLines > line) {
      for (const field of fields) this.#extraLines += countCrlf(field);
    }
    this.#lastLine = position.lines - this.#extraLines;
    this.#lastEmpty = position.empty_lines;
    return line;
  }

  #bad(line: number, count: number, reason: string): void {
    this.bad += count;
    if (this.problems.length < MAX_PROBLEMS) this.problems.push({ line, reason });
    if (this.bad > this.#maxBad) {
      throw new ProcessorError(
        'ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS',
        `More than ${this.#maxBad} malformed rows (the first at line ${this.problems[0]?.line}); nothing was loaded`,
        { problems: this.problems },
      );
    }
  }
}

function countCrlf(text: string): number {
  let count = 0;
  for (let at = text.indexOf('\r\n'); at !== -1; at = text.indexOf('\r\n', at + 2)) count++;
  return count;
}
