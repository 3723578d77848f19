/**
 * `GET /files/:id/rows`: the table a CSV file was loaded into, as JSON pages (by offset, or after a line), or every
 * row streamed as NDJSON or CSV. Reads need no token, as the other GET routes.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { RowPage, RowValue } from '../catalog/rows.ts';
import type { FileRecord } from '../catalog/types.ts';
import { FilesError } from '../errors.ts';
import type { AppDeps } from './app.ts';
import { accessOf, authorize, viewerOf } from './auth.ts';
import { visibleFile } from './files.ts';
import { CONTENT_SECURITY_POLICY } from './send.ts';

/** Rows of a JSON page when `limit` is not given, and at most. */
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;
/** Rows a stream reads per query: about a millisecond of SQLite's time, so the event loop is never held long. */
export const STREAM_BATCH = 1000;
/** PostgreSQL's `_line` is an `integer`: lines and offsets beyond it cannot be. */
const MAX_INT = 2_147_483_647;

const params = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } },
  required: ['id'],
} as const;

const querystring = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE },
    offset: { type: 'integer', minimum: 0, maximum: MAX_INT },
    after: { type: 'integer', minimum: 0, maximum: MAX_INT },
    format: { type: 'string', enum: ['json', 'ndjson', 'csv'] },
  },
  additionalProperties: false,
} as const;

interface RowsQuery {
  limit?: number;
  offset?: number;
  after?: number;
  format?: 'json' | 'ndjson' | 'csv';
}

/** What `GET /files/:id/rows` answers in JSON. */
export interface RowsResponse {
  /** The data columns in order (the header, sanitised into SQL names); the line is in `lines`, not here. */
  columns: string[];
  /** One array per row, values in `columns` order, rows in line order. */
  rows: RowValue[][];
  /** The CSV line each row starts on, one per row (the header is line 1). */
  lines: number[];
  /** Rows in the whole table. */
  total: number;
  /** `after` for the next page (the last row's line), or null when this page is the last. */
  next: number | null;
}

/** How a stream writes rows: a header once, then each row, as text. */
interface Encoder {
  head(columns: readonly string[]): string;
  row(values: readonly RowValue[]): string;
}

/**
 * One CSV field as RFC 4180 writes it: quoted (inner quotes doubled) when it holds a quote, a comma or a line
 * break, or starts or ends with white space (which readers may trim); null is an empty field.
 *
 * @example
 * ```ts
 * csvField('said "hi", twice'); // '"said ""hi"", twice"'
 * ```
 */
export function csvField(value: RowValue): string {
  if (value === null) return '';
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * One CSV record, CRLF-terminated as in RFC 4180.
 *
 * @example
 * ```ts
 * csvLine(['Ada', null, 'a,b']); // 'Ada,,"a,b"\r\n'
 * ```
 */
export function csvLine(values: readonly RowValue[]): string {
  return `${values.map(csvField).join(',')}\r\n`;
}

const csvEncoder = (): Encoder => ({ head: csvLine, row: csvLine });

/** NDJSON: one object per row, keyed by column name in column order (`_line` not included), `\n` after each. */
function ndjsonEncoder(): Encoder {
  let keys: string[] = [];
  return {
    head(columns) {
      keys = columns.map((c) => `${JSON.stringify(c)}:`);
      return '';
    },
    row(values) {
      let out = '{';
      for (let i = 0; i < keys.length; i++)
        out += `${i === 0 ? '' : ','}${keys[i]}${JSON.stringify(values[i])}`;
      return `${out}}\n`;
    },
  };
}

/**
 * Every row of a CSV table from `first` (its first batch) on, as text. A batch is read only when the stream's
 * buffer has room, which, piped into the response, is as fast as the client reads: memory stays constant whatever
 * the table's size, and a client that stops reading stops the reading. Each batch is one short query (keyset, after
 * the previous batch's last line), so no cursor or connection is held between them. Destroyed (the client went
 * away), it reads nothing more; a batch being read then is dropped.
 */
class RowStream extends Readable {
  readonly #read: (after: number) => Promise<RowPage | undefined>;
  readonly #encoder: Encoder;
  readonly #columns: string[];
  #first: RowPage | undefined;
  #after = -1;
  #done = false;

  constructor(first: RowPage, encoder: Encoder, read: (after: number) => Promise<RowPage | undefined>) {
    super({ highWaterMark: 64 * 1024 });
    this.#first = first;
    this.#columns = first.columns;
    this.#encoder = encoder;
    this.#read = read;
  }

  override _read(): void {
    this.#next().then(
      (chunk) => {
        if (!this.destroyed) this.push(chunk);
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  /** The next batch as text; null at the end. */
  async #next(): Promise<string | null> {
    let chunk = '';
    if (this.#first) {
      chunk = this.#encoder.head(this.#columns);
      chunk += this.#batch(this.#first);
      this.#first = undefined;
    }
    while (chunk === '' && !this.#done && !this.destroyed) {
      const page = await this.#read(this.#after);
      if (page === undefined || page.columns.join() !== this.#columns.join()) {
        throw new FilesError(
          'ERR_WEFT_FILES_NO_ROWS',
          'The CSV table was deleted or replaced while it was streamed',
        );
      }
      chunk = this.#batch(page);
    }
    return chunk === '' ? null : chunk;
  }

  #batch(page: RowPage): string {
    if (page.rows.length < STREAM_BATCH) this.#done = true;
    const last = page.lines.at(-1);
    if (last !== undefined) this.#after = last;
    let out = '';
    for (const values of page.rows) out += this.#encoder.row(values);
    return out;
  }
}

/** The 409 for a file without a CSV table, saying why: not CSV, or its CSV job's state. */
async function noRows(deps: AppDeps, file: FileRecord): Promise<FilesError> {
  const { id } = file;
  if (file.type !== 'text/csv') {
    return new FilesError('ERR_WEFT_FILES_NO_ROWS', `File ${id} is ${file.type}, not CSV: it has no rows`);
  }
  // Only for the message: with the queue away the answer is the same 409, without the job's state.
  const job = await deps.queue.list({ fileId: id, limit: 100 }).then(
    (jobs) => jobs.find((j) => j.kind === 'csv'),
    () => undefined,
  );
  let why = 'has not been loaded';
  if (job?.state === 'dead') why = `failed to load (${job.errorCode ?? 'error'}: ${job.lastError ?? ''})`;
  else if (job && job.state !== 'completed')
    why = `has not been loaded yet (its job is ${job.state}); retry later`;
  return new FilesError('ERR_WEFT_FILES_NO_ROWS', `The CSV file ${id} ${why}`);
}

/** The CSV export's file name: the upload's, with `.csv` for its extension. */
function csvName(name: string): string {
  const dot = name.lastIndexOf('.');
  return `${dot > 0 ? name.slice(0, dot) : name}.csv`;
}

/**
 * Registers `GET /files/:id/rows`.
 *
 * @example
 * ```ts
 * fileRoutes(app, deps);
 * rowsRoutes(app, deps); // GET /files/:id/rows?limit=100&after=41, ?format=ndjson, ?format=csv
 * ```
 */
export function rowsRoutes(app: FastifyInstance, deps: AppDeps): void {
  const { catalog } = deps;
  const read = authorize(accessOf(deps), 'read');

  app.get('/files/:id/rows', { onRequest: read, schema: { params, querystring } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const q = request.query as RowsQuery;
    const format = q.format ?? 'json';
    if (format !== 'json' && (q.limit !== undefined || q.offset !== undefined)) {
      throw new FilesError(
        'ERR_WEFT_FILES_BAD_REQUEST',
        `limit and offset page the JSON format; format=${format} streams every row (after= resumes after a line)`,
      );
    }
    const file = await visibleFile(catalog, viewerOf(request), id);
    const limit = format === 'json' ? (q.limit ?? DEFAULT_PAGE) : STREAM_BATCH;
    const page = await catalog.rows(id, { limit, offset: q.offset, after: q.after });
    // Counted after the page: a table dropped in between (the file deleted) is noticed by either.
    const total = page && format === 'json' ? await catalog.rowCount(id) : 0;
    if (!page || total === undefined) {
      // Deleted meanwhile: the file's 404, not "no rows".
      if (!(await catalog.get(id))) throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No file ${id}`);
      throw await noRows(deps, file);
    }
    if (format === 'json') {
      const next = page.rows.length === limit ? (page.lines.at(-1) ?? null) : null;
      return {
        columns: page.columns,
        rows: page.rows,
        lines: page.lines,
        total,
        next,
      } satisfies RowsResponse;
    }
    reply
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .header('cache-control', 'private, no-cache');
    if (format === 'csv') {
      const name = csvName(file.name);
      const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
      reply
        .type('text/csv; charset=utf-8')
        .header(
          'content-disposition',
          `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`,
        );
    } else reply.type('application/x-ndjson');
    const encoder = format === 'csv' ? csvEncoder() : ndjsonEncoder();
    return reply.send(
      new RowStream(page, encoder, (after) => catalog.rows(id, { limit: STREAM_BATCH, after })),
    );
  });
}
