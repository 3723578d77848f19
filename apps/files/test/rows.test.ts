// GET /files/:id/rows (issue 18): the table a CSV upload was loaded into, as JSON pages (limit, offset, after,
// total, next), and every row streamed as NDJSON or CSV. The streams read the table in keyset batches only as fast
// as the client reads (a paused client stops the reading; one that goes away ends it), in SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import pg from 'pg';
import { type Catalog, csvTableFor } from '../src/catalog/types.ts';
import type { FilesEvent } from '../src/events/types.ts';
import { csvField, csvLine, STREAM_BATCH } from '../src/http/rows.ts';
import { ingestCsv } from '../src/processors/csv.ts';
import { type Running, startService, waitFor } from './helpers.ts';
import { DATABASE_URL, serviceSkip } from './services.ts';

const pgSkip = await serviceSkip({ postgres: DATABASE_URL });

/** Quotes, commas, a line break inside a field, an empty line, non-ASCII and empty values. */
const SAMPLE =
  'id,name,note\n' +
  '1,Ada,"Lovelace, Countess"\n' +
  '2,Grace,"said ""hi"""\n' +
  '3,Zoë,"two\nlines"\n' +
  '\n' +
  '4,東京,😀 ok\n' +
  '5,,\n';
const COLUMNS = ['id', 'name', 'note'];
const ROWS = [
  ['1', 'Ada', 'Lovelace, Countess'],
  ['2', 'Grace', 'said "hi"'],
  ['3', 'Zoë', 'two\nlines'],
  ['4', '東京', '😀 ok'],
  ['5', '', ''],
];
const LINES = [2, 3, 4, 7, 8];
const NDJSON = `${ROWS.map((r) => JSON.stringify({ id: r[0], name: r[1], note: r[2] })).join('\n')}\n`;
const CSV =
  'id,name,note\r\n1,Ada,"Lovelace, Countess"\r\n2,Grace,"said ""hi"""\r\n3,Zoë,"two\nlines"\r\n' +
  '4,東京,😀 ok\r\n5,,\r\n';

interface Page {
  columns: string[];
  rows: (string | null)[][];
  lines: number[];
  total: number;
  next: number | null;
}

async function json<T>(url: string, status = 200): Promise<T> {
  const res = await fetch(url);
  const text = await res.text();
  assert.equal(res.status, status, `${url}: ${text}`);
  return JSON.parse(text) as T;
}

async function errorOf(url: string, status: number): Promise<{ code: string; message: string }> {
  return (await json<{ error: { code: string; message: string } }>(url, status)).error;
}

/** Uploads `body` as `name`; with `wait`, resolves once its CSV job completed or died. */
async function upload(s: Running, body: string, name: string, wait = true): Promise<string> {
  const res = await fetch(`${s.url}/files?name=${encodeURIComponent(name)}`, { method: 'POST', body });
  const text = await res.text();
  assert.equal(res.status, 201, text);
  const up = JSON.parse(text) as { id: string; jobs: { id: number; kind: string }[] };
  const job = up.jobs.find((j) => j.kind === 'csv');
  if (wait && job) await jobDone(s, job.id);
  return up.id;
}

function jobDone(s: Running, jobId: number): Promise<unknown> {
  return waitFor(
    s.events,
    (e): e is Extract<FilesEvent, { type: 'job.completed' | 'job.failed' }> =>
      (e.type === 'job.completed' || (e.type === 'job.failed' && e.data.dead)) && e.data.jobId === jobId,
    30_000,
    `CSV job ${jobId} to finish`,
  );
}

/** The CSV text of `rows` rows `<n>,name <n>,<padding>` (about 100 bytes each), written to a temp file. */
async function bigCsv(dir: string, rows: number): Promise<string> {
  const path = join(dir, `big-${rows}.csv`);
  const out = createWriteStream(path);
  out.write('id,name,pad\n');
  const pad = 'x'.repeat(80);
  for (let i = 1; i <= rows; i++) {
    if (!out.write(`${i},name ${i},${pad}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
  return path;
}

/** Replaces the CSV table of `id` with the rows of `input`, loaded by the processor itself. */
async function loadTable(s: Running, id: string, input: string): Promise<void> {
  await ingestCsv({ input, database: s.catalog.csvDatabase, table: csvTableFor(id), maxBadRows: 0 });
}

/** Counts the calls to the service's `catalog.rows` (the stream's batch reader) until `restore()`. */
function countRowReads(catalog: Catalog): { calls: () => number; restore: () => void } {
  const real = catalog.rows;
  let calls = 0;
  // Set on the adapter behind the service's wrapper, so the route's calls go through it (and the wrapper) still.
  catalog.rows = (...args) => {
    calls++;
    return real(...args);
  };
  return {
    calls: () => calls,
    restore: () => void delete (catalog as Partial<Catalog>).rows,
  };
}

/**
 * Resolves with `count()` once it stayed the same over three full requests to the server (each many turns of its
 * event loop, with the I/O between); fails naming `what` after `ms`.
 */
async function settled(
  s: Running,
  id: string,
  count: () => number,
  ms: number,
  what: string,
): Promise<number> {
  const deadline = performance.now() + ms;
  let last = -1;
  for (let same = 0; same < 3; ) {
    if (performance.now() > deadline) throw new Error(`${what}: still changing after ${ms} ms`);
    await (await fetch(`${s.url}/files/${id}`)).arrayBuffer();
    const n = count();
    same = n === last ? same + 1 : 0;
    last = n;
  }
  return last;
}

/** A streaming GET the test reads by hand: its response, with bytes and lines counted as they come. */
interface Reader {
  res: http.IncomingMessage;
  bytes: number;
  lines: number;
  /** The last complete line. */
  last: string;
  /** While true, the response is paused after each chunk: the client reads nothing more until `resume()`. */
  holding: boolean;
  resume(): void;
  /** Resolves when the body ended; rejects when `ms` pass first or the response fails. */
  ended(ms: number): Promise<void>;
  close(): void;
}

function get(url: string, holding: boolean): Promise<Reader> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let tail = '';
      let failed: Error | undefined;
      res.on('error', (err) => {
        failed = err;
      });
      const reader: Reader = {
        res,
        bytes: 0,
        lines: 0,
        last: '',
        holding,
        resume() {
          reader.holding = false;
          res.resume();
        },
        ended: (ms) =>
          new Promise<void>((done, fail) => {
            if (res.complete) return done();
            if (failed) return fail(failed);
            const timer = setTimeout(() => fail(new Error(`the stream did not end within ${ms} ms`)), ms);
            res.once('end', () => {
              clearTimeout(timer);
              done();
            });
            res.once('error', (err) => {
              clearTimeout(timer);
              fail(err);
            });
          }),
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        reader.bytes += Buffer.byteLength(chunk);
        const parts = (tail + chunk).split('\n');
        tail = parts.pop() ?? '';
        reader.lines += parts.length;
        if (parts.length > 0) reader.last = parts.at(-1)!;
        if (reader.holding) res.pause();
      });
      resolve(reader);
    });
    // Before the answer: the request failed. After it, the response reports (or the test closed it).
    req.on('error', reject);
    req.setTimeout(60_000, () => req.destroy(new Error('no answer within 60 s')));
  });
}

describe('GET /files/:id/rows (SQLite)', () => {
  let s: Running;
  let id: string;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'files-rows-'));
    s = await startService({ concurrency: 1 });
    id = await upload(s, SAMPLE, 'sample data.csv');
  });
  after(async () => {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers the columns, the rows in line order, their lines and the total', async () => {
    const page = await json<Page>(`${s.url}/files/${id}/rows`);
    assert.deepEqual(page, { columns: COLUMNS, rows: ROWS, lines: LINES, total: 5, next: null });
  });

  it('pages with limit and offset, and with after (keyset), next naming the last line', async () => {
    const base = `${s.url}/files/${id}/rows`;
    const first = await json<Page>(`${base}?limit=2`);
    assert.deepEqual([first.rows, first.lines, first.total, first.next], [ROWS.slice(0, 2), [2, 3], 5, 3]);
    const second = await json<Page>(`${base}?limit=2&after=${first.next}`);
    assert.deepEqual([second.rows, second.lines, second.next], [ROWS.slice(2, 4), [4, 7], 7]);
    const third = await json<Page>(`${base}?limit=2&after=${second.next}`);
    assert.deepEqual([third.rows, third.lines, third.next], [ROWS.slice(4), [8], null]);
    assert.deepEqual((await json<Page>(`${base}?limit=2&offset=2`)).rows, ROWS.slice(2, 4));
    // A line inside a row (5: the second line of row 3) pages from the next row; offset counts after `after`.
    assert.deepEqual((await json<Page>(`${base}?after=5`)).lines, [7, 8]);
    assert.deepEqual((await json<Page>(`${base}?after=2&offset=2&limit=1`)).lines, [7]);
    const past = await json<Page>(`${base}?offset=10`);
    assert.deepEqual(
      [past.columns, past.rows, past.lines, past.total, past.next],
      [COLUMNS, [], [], 5, null],
    );
    assert.deepEqual((await json<Page>(`${base}?limit=5`)).next, 8, 'a full page: the next one may be empty');
    assert.deepEqual((await json<Page>(`${base}?after=8`)).rows, []);
  });

  it('answers 400 ERR_WEFT_FILES_BAD_REQUEST for bad parameters, 404 for an unknown file', async () => {
    for (const query of [
      'limit=0',
      'limit=1001',
      'limit=abc',
      'limit=1.5',
      'offset=-1',
      'offset=x',
      'after=-1',
      'after=2147483648',
      'format=xml',
      'format=ndjson&limit=10',
      'format=csv&offset=1',
    ]) {
      const err = await errorOf(`${s.url}/files/${id}/rows?${query}`, 400);
      assert.equal(err.code, 'ERR_WEFT_FILES_BAD_REQUEST', query);
    }
    assert.equal((await errorOf(`${s.url}/files/not-an-id/rows`, 400)).code, 'ERR_WEFT_FILES_BAD_REQUEST');
    for (const format of ['json', 'ndjson', 'csv']) {
      const err = await errorOf(`${s.url}/files/${randomUUID()}/rows?format=${format}`, 404);
      assert.equal(err.code, 'ERR_WEFT_FILES_NOT_FOUND', format);
    }
  });

  it('answers 409 ERR_WEFT_FILES_NO_ROWS for a file that is not CSV, and for a CSV job that failed', async () => {
    const text = await upload(s, 'just some prose without any delimiters\n', 'notes.txt');
    for (const format of ['json', 'ndjson', 'csv']) {
      const err = await errorOf(`${s.url}/files/${text}/rows?format=${format}`, 409);
      assert.equal(err.code, 'ERR_WEFT_FILES_NO_ROWS', format);
      assert.match(err.message, /text\/plain, not CSV/);
    }
    // Sniffed as CSV (commas on most lines) but no table: its job dies; no rows, saying why.
    const prose = 'Hello, all\nsee the notes, below, twice\none, two, three, four\nx, y, z\nno comma here\n';
    const dead = await upload(s, prose, 'prose.csv');
    const err = await errorOf(`${s.url}/files/${dead}/rows`, 409);
    assert.equal(err.code, 'ERR_WEFT_FILES_NO_ROWS');
    assert.match(err.message, /failed to load \(ERR_WEFT_FILES_CSV_INCONSISTENT/);
  });

  it('answers 404 once the file is deleted, and its table is gone', async () => {
    const gone = await upload(s, SAMPLE, 'gone.csv');
    assert.equal((await json<Page>(`${s.url}/files/${gone}/rows`)).total, 5);
    assert.equal((await fetch(`${s.url}/files/${gone}`, { method: 'DELETE' })).status, 204);
    for (const format of ['json', 'ndjson', 'csv']) {
      const err = await errorOf(`${s.url}/files/${gone}/rows?format=${format}`, 404);
      assert.equal(err.code, 'ERR_WEFT_FILES_NOT_FOUND', format);
    }
    assert.equal(await s.catalog.rows(gone, { limit: 1 }), undefined);
    assert.equal(await s.catalog.rowCount(gone), undefined);
  });

  it('streams NDJSON: one object per row keyed by column, in line order', async () => {
    const res = await fetch(`${s.url}/files/${id}/rows?format=ndjson`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(await res.text(), NDJSON);
    const rest = await fetch(`${s.url}/files/${id}/rows?format=ndjson&after=4`);
    assert.equal(await rest.text(), `${NDJSON.split('\n').slice(3).join('\n')}`, 'after= resumes a stream');
  });

  it('streams CSV: a header line, then RFC 4180 records that parse back to the rows', async () => {
    const res = await fetch(`${s.url}/files/${id}/rows?format=csv`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/csv; charset=utf-8');
    assert.equal(
      res.headers.get('content-disposition'),
      `attachment; filename="sample data.csv"; filename*=UTF-8''sample%20data.csv`,
    );
    const body = await res.text();
    assert.equal(body, CSV);
    assert.deepEqual(parse(body, { relax_column_count: false }), [COLUMNS, ...ROWS]);
    const empty = await fetch(`${s.url}/files/${id}/rows?format=csv&after=8`);
    assert.equal(await empty.text(), 'id,name,note\r\n', 'no rows after the last: the header alone');
  });

  it('quotes CSV fields that need it, and only those', () => {
    assert.equal(csvField('plain'), 'plain');
    assert.equal(csvField('a,b'), '"a,b"');
    assert.equal(csvField('say "x"'), '"say ""x"""');
    assert.equal(csvField('a\nb'), '"a\nb"');
    assert.equal(csvField('a\rb'), '"a\rb"');
    assert.equal(csvField(' lead'), '" lead"');
    assert.equal(csvField('trail\t'), '"trail\t"');
    assert.equal(csvField('Zoë 😀'), 'Zoë 😀');
    assert.equal(csvField(''), '');
    assert.equal(csvField(null), '');
    assert.equal(csvLine(['a', null, '"']), 'a,,""""\r\n');
  });

  it('indexes _line, so pages after a line are index seeks', () => {
    const table = csvTableFor(id);
    const plan = s
      .db!.prepare(`EXPLAIN QUERY PLAN SELECT * FROM ${table} WHERE _line > ? ORDER BY _line LIMIT 10`)
      .all(2)
      .map((r) => String(r.detail));
    assert.match(plan.join('\n'), new RegExp(`USING INDEX ${table}__line \\(_line>\\?\\)`), plan.join('\n'));
  });

  it('streams a table of many batches whole and in order, in both formats', async () => {
    const many = await upload(s, 'a,b\n1,2\n', 'many.csv');
    const rows = STREAM_BATCH * 2 + 500;
    await loadTable(s, many, await bigCsv(dir, rows));
    const ndjson = (await (await fetch(`${s.url}/files/${many}/rows?format=ndjson`)).text()).split('\n');
    assert.equal(ndjson.pop(), '');
    assert.equal(ndjson.length, rows);
    assert.deepEqual(
      ndjson.map((l) => Number((JSON.parse(l) as { id: string }).id)),
      Array.from({ length: rows }, (_, i) => i + 1),
    );
    const csv = parse(await (await fetch(`${s.url}/files/${many}/rows?format=csv`)).text()) as string[][];
    assert.equal(csv.length, rows + 1);
    assert.deepEqual(csv.at(-1)?.slice(0, 2), [String(rows), `name ${rows}`]);
  });

  describe('a table of 200,000 rows (about 24 MB of NDJSON)', () => {
    const ROWS_BIG = 200_000;
    // Batches of a whole stream: the route's first, then one per batch, then the empty one that ends it.
    const BATCHES = ROWS_BIG / STREAM_BATCH + 1;
    let big: string;
    before(async () => {
      big = await upload(s, 'id,name,pad\n1,a,b\n', 'big.csv');
      await loadTable(s, big, await bigCsv(dir, ROWS_BIG));
    });

    it('reads batches only as fast as the client reads: a paused client stops the reading', async () => {
      const reads = countRowReads(s.catalog);
      const reader = await get(`${s.url}/files/${big}/rows?format=ndjson`, true);
      try {
        assert.equal(reader.res.statusCode, 200);
        // The client took its first chunk and stopped: the server fills the socket's buffers, then must stop.
        const paused = await settled(s, big, reads.calls, 30_000, 'batch reads while the client is paused');
        assert.ok(
          paused < BATCHES / 2,
          `with the client paused after ${reader.bytes} bytes the server read ${paused} of ${BATCHES} batches`,
        );
        reader.resume();
        await reader.ended(60_000);
        assert.equal(reader.lines, ROWS_BIG);
        assert.equal((JSON.parse(reader.last) as { id: string }).id, String(ROWS_BIG));
        assert.equal(reads.calls(), BATCHES, 'each batch read once');
      } finally {
        reader.close();
        reads.restore();
      }
    });

    it('stops reading when the client goes away mid-stream, and serves the next request', async () => {
      const reads = countRowReads(s.catalog);
      try {
        const reader = await get(`${s.url}/files/${big}/rows?format=ndjson`, true);
        assert.equal(reader.res.statusCode, 200);
        const closed = new Promise((r) => reader.res.once('close', r));
        reader.close();
        await closed;
        const read = await settled(s, big, reads.calls, 30_000, 'batch reads after the client went away');
        assert.ok(read < BATCHES / 2, `the server read ${read} of ${BATCHES} batches for a client that left`);
        const page = await json<Page>(`${s.url}/files/${big}/rows?limit=2&after=100000`);
        assert.deepEqual([page.rows.map((r) => r[0]), page.total], [['100000', '100001'], ROWS_BIG]);
      } finally {
        reads.restore();
      }
      const whole = await get(`${s.url}/files/${big}/rows?format=ndjson&after=${ROWS_BIG - 10}`, false);
      await whole.ended(30_000);
      // Row n is on line n + 1: after line ROWS_BIG - 10 come rows ROWS_BIG - 10 to ROWS_BIG.
      assert.equal(whole.lines, 11, 'a stream after it is whole');
      assert.equal((JSON.parse(whole.last) as { id: string }).id, String(ROWS_BIG));
    });
  });
});

describe('GET /files/:id/rows before the CSV job ran', () => {
  let s: Running;
  before(async () => {
    s = await startService({ concurrency: 1 }, { runJobs: false });
  });
  after(() => s.stop());

  it('answers 409 ERR_WEFT_FILES_NO_ROWS while the job is queued, then the rows once it completed', async () => {
    const res = await fetch(`${s.url}/files?name=later.csv`, { method: 'POST', body: SAMPLE });
    const up = (await res.json()) as { id: string; jobs: { id: number }[] };
    for (const format of ['json', 'ndjson', 'csv']) {
      const err = await errorOf(`${s.url}/files/${up.id}/rows?format=${format}`, 409);
      assert.equal(err.code, 'ERR_WEFT_FILES_NO_ROWS', format);
      assert.match(err.message, /has not been loaded yet \(its job is queued\); retry later/);
    }
    const done = jobDone(s, up.jobs[0]!.id);
    s.runner.start();
    await done;
    assert.deepEqual((await json<Page>(`${s.url}/files/${up.id}/rows`)).rows, ROWS);
  });
});

describe('GET /files/:id/rows (PostgreSQL)', { skip: pgSkip }, () => {
  let s: Running;
  let admin: pg.Client;
  let dir: string;
  const schema = `rows_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'files-rows-pg-'));
    admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    const url = new URL(DATABASE_URL);
    url.searchParams.set('options', `-c search_path=${schema}`);
    s = await startService({ concurrency: 1, databaseUrl: url.href });
  });
  after(async () => {
    await s?.stop();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pages with offset and after, and streams NDJSON and CSV exactly', async () => {
    const id = await upload(s, SAMPLE, 'sample.csv');
    const base = `${s.url}/files/${id}/rows`;
    assert.deepEqual(await json<Page>(base), {
      columns: COLUMNS,
      rows: ROWS,
      lines: LINES,
      total: 5,
      next: null,
    });
    const first = await json<Page>(`${base}?limit=2`);
    assert.deepEqual([first.rows, first.next], [ROWS.slice(0, 2), 3]);
    assert.deepEqual((await json<Page>(`${base}?limit=2&after=3`)).lines, [4, 7]);
    assert.deepEqual((await json<Page>(`${base}?limit=2&offset=3`)).lines, [7, 8]);
    assert.equal(await (await fetch(`${base}?format=ndjson`)).text(), NDJSON);
    assert.equal(await (await fetch(`${base}?format=csv`)).text(), CSV);
    // The processor indexed _line in PostgreSQL too.
    const { rows } = await admin.query<{ indexdef: string }>(
      'SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2',
      [schema, csvTableFor(id)],
    );
    assert.match(rows.map((r) => r.indexdef).join(), /\(_line\)/);
    assert.equal((await fetch(`${s.url}/files/${id}`, { method: 'DELETE' })).status, 204);
    assert.equal((await errorOf(base, 404)).code, 'ERR_WEFT_FILES_NOT_FOUND');
  });

  it('streams a table of many batches through the pool, whole and in order', async () => {
    const id = await upload(s, 'a,b\n1,2\n', 'many.csv');
    const rows = STREAM_BATCH * 3 + 7;
    await loadTable(s, id, await bigCsv(dir, rows));
    const reads = countRowReads(s.catalog);
    try {
      const lines = (await (await fetch(`${s.url}/files/${id}/rows?format=ndjson`)).text()).split('\n');
      assert.equal(lines.pop(), '');
      assert.deepEqual(
        lines.map((l) => Number((JSON.parse(l) as { id: string }).id)),
        Array.from({ length: rows }, (_, i) => i + 1),
      );
      assert.equal(reads.calls(), 4, 'one query per batch of 1000');
    } finally {
      reads.restore();
    }
    assert.equal(
      (await errorOf(`${s.url}/files/${id}/rows?format=ndjson&limit=5`, 400)).code,
      'ERR_WEFT_FILES_BAD_REQUEST',
    );
    assert.equal((await json<Page>(`${s.url}/files/${id}/rows?limit=1`)).total, rows);
  });
});
