// ingestCsv into PostgreSQL: the same behaviour as into SQLite (csv.test.ts), through a pool thread and called
// directly. Every test run loads into its own schema, chosen through the URL's `options=-c search_path=…`, and
// drops it at the end.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Pool } from 'weftjs/pool';
import { ingestCsv } from '../../src/processors/csv.ts';
import type { CsvJobInput } from '../../src/processors/index.ts';
import { DATABASE_URL, serviceSkip } from '../services.ts';
import { processorPool, rejection, TASK_TIMEOUT, tempDir } from './helpers.ts';

const skip = await serviceSkip({ postgres: DATABASE_URL });

type MeasureTasks = typeof import('./fixtures/measure-tasks.ts');

describe('ingestCsv into PostgreSQL', { skip }, () => {
  const schema = `test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const url = new URL(DATABASE_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const database = url.href;
  const admin = new pg.Client({ connectionString: database });
  const pool = processorPool();
  let dir = '';
  let cleanup = async () => {};
  let n = 0;

  before(async () => {
    ({ dir, cleanup } = await tempDir('csv-pg'));
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
  });
  after(async () => {
    await pool.close();
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
    await cleanup();
  });

  async function job(text: string, options: Partial<CsvJobInput> = {}): Promise<CsvJobInput> {
    const input = join(dir, `${++n}.csv`);
    await writeFile(input, text);
    return { input, database, table: `csv_${n}`, maxBadRows: 10, ...options };
  }

  const run = (input: CsvJobInput) => pool.run('ingestCsv', [input], TASK_TIMEOUT);

  async function query<T>(sql: string): Promise<T[]> {
    return (await admin.query(sql)).rows as T[];
  }

  async function tables(): Promise<string[]> {
    const { rows } = await admin.query<{ name: string }>(
      'SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1',
      [schema],
    );
    return rows.map((r) => r.name);
  }

  it('loads a clean file in a pool thread: every row, as text, with the line it starts on', async () => {
    const csv =
      '\uFEFFid,name,note\r\n1,Ada,"Lovelace, Countess"\r\n2, Grace ,"said ""hi"""\r\n3,Zoë,"two\nlines"\r\n4,,\r\n';
    const input = await job(csv, { batchSize: 2 });
    assert.deepEqual(await run(input), {
      table: input.table,
      columns: ['id', 'name', 'note'],
      rows: 4,
      badRows: 0,
      problems: [],
      dialect: { encoding: 'utf-8', bom: true, delimiter: ',', quote: '"' },
    });
    assert.deepEqual(await query(`SELECT * FROM ${input.table} ORDER BY _line`), [
      { _line: 2, id: '1', name: 'Ada', note: 'Lovelace, Countess' },
      { _line: 3, id: '2', name: 'Grace', note: 'said "hi"' },
      { _line: 4, id: '3', name: 'Zoë', note: 'two\nlines' },
      { _line: 6, id: '4', name: '', note: '' },
    ]);
    const types = await query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns
       WHERE table_schema = '${schema}' AND table_name = '${input.table}' ORDER BY ordinal_position`,
    );
    assert.deepEqual(
      types.map((c) => `${c.column_name} ${c.data_type}`),
      ['_line integer', 'id text', 'name text', 'note text'],
    );
    assert.deepEqual(await tables(), [input.table]);
  });

  it('sanitises header names (keywords such as "order" are quoted); accepts postgresql:// URLs', async () => {
    const input = await job(
      'First Name,first name,,2024 Total ($),Prénom,_line,ORDER,col_3\na,b,c,d,e,f,g,h\n',
      { database: database.replace(/^postgres:/, 'postgresql:') },
    );
    const result = await ingestCsv(input);
    const expected = [
      'first_name',
      'first_name_2',
      'col_3',
      'c_2024_total',
      'prenom',
      'line',
      'order',
      'col_3_2',
    ];
    assert.deepEqual(result.columns, expected);
    assert.deepEqual(await query(`SELECT * FROM ${input.table}`), [
      { _line: 2, ...Object.fromEntries(expected.map((c, i) => [c, 'abcdefgh'[i]])) },
    ]);
  });

  it('skips malformed rows under the limit, reports them with their lines, keeps the good rows', async () => {
    const csv = [
      'a,b,c',
      '1,2,3',
      '4,5',
      '',
      '6,7,8',
      '9,10,11,12',
      '13,"x"y,15',
      '16,17,18',
      '19,"unclosed,20',
    ];
    const result = await ingestCsv(await job(`${csv.join('\n')}\n21,22,23\n`));
    assert.deepEqual(result.problems, [
      { line: 3, reason: 'expected 3 fields, found 2' },
      { line: 6, reason: 'expected 3 fields, found 4' },
      { line: 9, reason: 'unclosed quote: lines 9 to 10 (end of file) skipped' },
    ]);
    assert.equal(result.badRows, 4);
    assert.equal(result.rows, 4);
    const rows = await query<{ _line: number; b: string }>(`SELECT _line, b FROM csv_${n} ORDER BY _line`);
    assert.deepEqual(
      rows.map((r) => [r._line, r.b]),
      [
        [2, '2'],
        [5, '7'],
        [7, '"x"y'],
        [8, '17'],
      ],
    );
  });

  it('over maxBadRows: fails with the problems, leaves the previous table as it was and no staging table', async () => {
    const good = await job('a,b\n1,2\n3,4\n');
    await ingestCsv(good);
    const bad = { ...(await job('a,b\n1\n2\n3,4\n5\n')), table: good.table, maxBadRows: 2 };
    const err = await rejection(ingestCsv(bad));
    assert.equal(err.code, 'ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS');
    assert.equal((err.problems as unknown[]).length, 3);
    assert.deepEqual(await query(`SELECT a, b FROM ${good.table} ORDER BY _line`), [
      { a: '1', b: '2' },
      { a: '3', b: '4' },
    ]);
    assert.ok(!(await tables()).includes(`${good.table}__staging`));
    const fresh = await job('a,b\n1\n2\n', { maxBadRows: 0 });
    assert.equal((await rejection(ingestCsv(fresh))).code, 'ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS');
    assert.ok(!(await tables()).some((t) => t.startsWith(fresh.table)));
  });

  it('an empty file fails with ERR_WEFT_FILES_CSV_EMPTY; a header alone gives an empty table', async () => {
    const empty = await job('\n\n');
    assert.equal((await rejection(ingestCsv(empty))).code, 'ERR_WEFT_FILES_CSV_EMPTY');
    assert.ok(!(await tables()).some((t) => t.startsWith(empty.table)));
    const header = await job('a,b\n');
    assert.equal((await ingestCsv(header)).rows, 0);
    assert.deepEqual(await query(`SELECT count(*)::int AS n FROM ${header.table}`), [{ n: 0 }]);
  });

  it('is idempotent: a re-run replaces the rows, and drops a staging table a crashed run left', async () => {
    const input = await job(`a,b\n${Array.from({ length: 2_500 }, (_, i) => `${i},x`).join('\n')}\n`);
    const first = await run(input);
    await admin.query(`CREATE TABLE ${input.table}__staging (_line integer, a text, b text)`);
    await admin.query(`INSERT INTO ${input.table}__staging VALUES (1, 'stale', 'stale')`);
    assert.deepEqual(await run(input), first);
    assert.deepEqual(
      await query(`SELECT count(*)::int AS n, count(DISTINCT _line)::int AS lines FROM ${input.table}`),
      [{ n: 2_500, lines: 2_500 }],
    );
    assert.ok(!(await tables()).includes(`${input.table}__staging`));
  });

  it('splits a batch into INSERTs under the 65,535-parameter limit; drops NUL characters', async () => {
    // 1,599 columns (PostgreSQL's 1,600 with `_line`): 40 rows per INSERT, so a batch of 100 takes three.
    const header = Array.from({ length: 1_599 }, (_, i) => `c${i}`).join(',');
    const row = Array.from({ length: 1_599 }, (_, i) => (i === 1 ? 'x\0y' : String(i % 10))).join(',');
    const input = await job(`${header}\n${`${row}\n`.repeat(100)}`, { batchSize: 100 });
    assert.equal((await ingestCsv(input)).rows, 100);
    assert.deepEqual(
      await query(`SELECT count(*)::int AS n, min(c1) AS c1, min(c1598) AS last FROM ${input.table}`),
      [{ n: 100, c1: 'xy', last: '8' }],
    );
    const wide = await job(`${header},one_more\n`);
    assert.equal((await rejection(ingestCsv(wide))).code, 'ERR_WEFT_FILES_CSV_TOO_MANY_COLUMNS');
  });

  it('stops when its signal aborts mid-load: the old table stays, no staging table is left', async (t) => {
    const input = await job('a,b\n1,2\n', { batchSize: 100 });
    await ingestCsv(input);
    await writeFile(input.input, `a,b\n${'3,4\n'.repeat(10_000)}`);
    // Abort as the third batch is sent: event-driven, no timing involved.
    const controller = new AbortController();
    const original = pg.Client.prototype.query;
    let inserts = 0;
    t.mock.method(pg.Client.prototype, 'query', function (this: pg.Client, ...args: unknown[]) {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string }).text;
      if (text?.startsWith('INSERT') && ++inserts === 3) controller.abort();
      return Reflect.apply(original, this, args);
    });
    const err = await rejection(ingestCsv.call({ signal: controller.signal, taskId: 1 }, input));
    t.mock.restoreAll();
    assert.equal(err.name, 'AbortError');
    assert.ok(inserts < 10, `stopped after ${inserts} of 100 batches`);
    assert.deepEqual(await query(`SELECT a, b FROM ${input.table}`), [{ a: '1', b: '2' }]);
    assert.ok(!(await tables()).includes(`${input.table}__staging`));
  });

  it('an unreachable server rejects with the connection error', async () => {
    const input = await job('a\n1\n', { database: 'postgres://weft:pw@127.0.0.1:1/x' });
    assert.equal((await rejection(run(input))).code, 'ECONNREFUSED');
  });

  it('streams a 200k-row CSV with the thread heap bounded, well below the file size', async (t) => {
    const rows = 200_000;
    const input = join(dir, 'large.csv');
    function* lines() {
      yield 'id,name,email,city,amount,created_at\n';
      for (let i = 1; i <= rows; i += 5_000) {
        let chunk = '';
        for (let j = i; j < i + 5_000; j++)
          chunk += `${j},"Name ${j}, Jr.",user${j}@example.com,City ${j % 97},${(j * 7.31).toFixed(2)},2024-01-01\n`;
        yield chunk;
      }
    }
    await pipeline(Readable.from(lines()), createWriteStream(input));
    const fileSize = (await stat(input)).size;
    const measure = new Pool<MeasureTasks>({
      filename: new URL('./fixtures/measure-tasks.ts', import.meta.url),
      maxThreads: 1,
      resourceLimits: { maxOldGenerationSizeMb: 48 },
    });
    try {
      const job = { input, database, table: 'csv_large', maxBadRows: 0 };
      const { result, heapBefore, heapPeak, ms } = await measure.run('ingestMeasured', [job], TASK_TIMEOUT);
      assert.equal(result.rows, rows);
      const growth = heapPeak - heapBefore;
      t.diagnostic(
        `${rows} rows, ${(fileSize / 2 ** 20).toFixed(1)} MiB in ${ms.toFixed(0)} ms = ` +
          `${Math.round((rows / ms) * 1000)} rows/s; heap peak +${(growth / 2 ** 20).toFixed(1)} MiB`,
      );
      assert.ok(growth < fileSize / 2, `heap grew ${growth} bytes for a ${fileSize}-byte file`);
      assert.deepEqual(await query(`SELECT _line, name FROM csv_large WHERE id = '${rows}'`), [
        { _line: rows + 1, name: `Name ${rows}, Jr.` },
      ]);
    } finally {
      await measure.close();
    }
  });
});
