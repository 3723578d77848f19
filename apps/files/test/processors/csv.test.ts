import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { ingestCsv } from '../../src/processors/csv.ts';
import type { CsvJobInput } from '../../src/processors/index.ts';
import { processorPool, rejection, TASK_TIMEOUT, tempDir } from './helpers.ts';

describe('ingestCsv in a pool', () => {
  const pool = processorPool();
  let dir = '';
  let cleanup = async () => {};
  let database = '';
  let n = 0;

  before(async () => {
    ({ dir, cleanup } = await tempDir('csv'));
    database = join(dir, 'files.db');
  });
  after(async () => {
    await pool.close();
    await cleanup();
  });

  async function job(text: string, options: Partial<CsvJobInput> = {}): Promise<CsvJobInput> {
    const input = join(dir, `${++n}.csv`);
    await writeFile(input, text);
    return { input, database, table: `csv_${n}`, maxBadRows: 10, ...options };
  }

  function run(input: CsvJobInput) {
    return pool.run('ingestCsv', [input], TASK_TIMEOUT);
  }

  /** Reads the database from the main thread, as another process would. */
  function query<T>(sql: string): T[] {
    const db = new DatabaseSync(database);
    try {
      // node:sqlite rows have a null prototype; spread them so deepEqual compares values only.
      return db
        .prepare(sql)
        .all()
        .map((row) => ({ ...row }) as T);
    } finally {
      db.close();
    }
  }

  const tables = () =>
    query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").map((t) => t.name);

  it('loads a clean file: every row, its values as text and the line it starts on', async () => {
    const csv =
      '\uFEFFid,name,note\r\n1,Ada,"Lovelace, Countess"\r\n2, Grace ,"said ""hi"""\r\n3,Zoë,"two\nlines"\r\n4,,\r\n';
    const input = await job(csv, { batchSize: 2 });
    const result = await run(input);
    assert.deepEqual(result, {
      table: input.table,
      columns: ['id', 'name', 'note'],
      rows: 4,
      badRows: 0,
      problems: [],
      dialect: { encoding: 'utf-8', bom: true, delimiter: ',', quote: '"' },
    });
    const rows = query<Record<string, unknown>>(`SELECT * FROM ${input.table} ORDER BY _line`);
    assert.deepEqual(rows, [
      { _line: 2, id: '1', name: 'Ada', note: 'Lovelace, Countess' },
      { _line: 3, id: '2', name: 'Grace', note: 'said "hi"' },
      { _line: 4, id: '3', name: 'Zoë', note: 'two\nlines' },
      { _line: 6, id: '4', name: '', note: '' },
    ]);
    const types = query<{ name: string; type: string }>(`PRAGMA table_info(${input.table})`);
    assert.deepEqual(
      types.map((c) => `${c.name} ${c.type}`),
      ['_line INTEGER', 'id TEXT', 'name TEXT', 'note TEXT'],
    );
    assert.deepEqual(query<{ journal_mode: string }>('PRAGMA journal_mode'), [{ journal_mode: 'wal' }]);
  });

  it('sanitises header names: lowercase, safe characters, distinct, never empty or starting with a digit', async () => {
    const input = await job(
      'First Name,first name,,2024 Total ($),Prénom,_line,ORDER,col_3\na,b,c,d,e,f,g,h\n',
    );
    const result = await run(input);
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
    const [row] = query<Record<string, unknown>>(`SELECT * FROM ${input.table}`);
    assert.deepEqual(row, { _line: 2, ...Object.fromEntries(expected.map((c, i) => [c, 'abcdefgh'[i]])) });
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
      '21,22,23',
    ];
    const input = await job(`${csv.join('\n')}\n`);
    const result = await run(input);
    assert.deepEqual(result.problems, [
      { line: 3, reason: 'expected 3 fields, found 2' },
      { line: 6, reason: 'expected 3 fields, found 4' },
      { line: 9, reason: 'unclosed quote: lines 9 to 10 (end of file) skipped' },
    ]);
    // relax_quotes keeps `"x"y` as text; the unclosed quote swallows its own line and the next.
    assert.equal(result.badRows, 4);
    assert.equal(result.rows, 4);
    const rows = query<{ _line: number; b: string }>(`SELECT _line, b FROM ${input.table} ORDER BY _line`);
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

  it('keeps line numbers right in a CRLF file whose quoted fields hold CRLF line breaks', async () => {
    const csv = 'a,b\r\n"one\r\ntwo\r\nthree",1\r\n\r\nbad\r\n2,"x\r\ny"\r\n3,4\r\n5,"open\r\n';
    const input = await job(csv);
    const result = await run(input);
    assert.deepEqual(result.problems[0], { line: 6, reason: 'expected 2 fields, found 1' });
    // The start is right; the end of an unclosed quote's span is not: csv-parse counts each CRLF it swallowed
    // twice, and without the raw text (costly to keep) those cannot be told apart.
    assert.equal(result.problems[1]?.line, 10);
    assert.match(
      result.problems[1]?.reason ?? '',
      /^unclosed quote: lines 10 to 1[01] \(end of file\) skipped$/,
    );
    const rows = query<{ _line: number; b: string }>(`SELECT _line, b FROM ${input.table} ORDER BY _line`);
    assert.deepEqual(
      rows.map((r) => [r._line, r.b]),
      [
        [2, '1'],
        [7, 'x\r\ny'],
        [9, '4'],
      ],
    );
  });

  it('reports at most 20 problems but counts them all', async () => {
    // More good rows than bad ones: a file mostly off its header is not a table (see csv-dialect.test.ts).
    const good = Array.from({ length: 31 }, (_, i) => `${i},2`);
    const lines = ['a,b', ...Array.from({ length: 30 }, (_, i) => `bad${i}`), ...good];
    const result = await run(await job(`${lines.join('\n')}\n`, { maxBadRows: 30 }));
    assert.equal(result.badRows, 30);
    assert.equal(result.problems.length, 20);
    assert.deepEqual(result.problems[19], { line: 21, reason: 'expected 2 fields, found 1' });
    assert.equal(result.rows, 31);
  });

  it('over maxBadRows: fails with the problems, leaves the previous table as it was and no staging table', async () => {
    const good = await job('a,b\n1,2\n3,4\n');
    await run(good);
    const bad = { ...(await job('a,b\n1\n2\n3,4\n5\n')), table: good.table, maxBadRows: 2 };
    const err = await rejection(run(bad));
    assert.equal(err.name, 'ProcessorError');
    assert.equal(err.code, 'ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS');
    assert.match(err.message, /More than 2 malformed rows \(the first at line 2\)/);
    assert.deepEqual(err.problems, [
      { line: 2, reason: 'expected 2 fields, found 1' },
      { line: 3, reason: 'expected 2 fields, found 1' },
      { line: 5, reason: 'expected 2 fields, found 1' },
    ]);
    assert.deepEqual(query(`SELECT count(*) AS n FROM ${good.table}`), [{ n: 2 }]);
    assert.ok(!tables().includes(`${good.table}__staging`));
    // A first load that fails creates nothing.
    const fresh = await job('a,b\n1\n2\n', { maxBadRows: 0 });
    assert.equal((await rejection(run(fresh))).code, 'ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS');
    assert.ok(!tables().some((t) => t.startsWith(fresh.table)), `no ${fresh.table} table of any kind`);
  });

  it('an empty file, or one with blank lines only, fails with ERR_WEFT_FILES_CSV_EMPTY', async () => {
    for (const text of ['', '\n\n', '\uFEFF', ' , \n']) {
      const input = await job(text);
      const err = await rejection(run(input));
      assert.equal(err.code, 'ERR_WEFT_FILES_CSV_EMPTY', JSON.stringify(text));
      assert.ok(!tables().some((t) => t.startsWith(input.table)));
    }
  });

  it('a header without rows gives an empty table', async () => {
    const input = await job('a,b\n');
    assert.deepEqual(await run(input), {
      table: input.table,
      columns: ['a', 'b'],
      rows: 0,
      badRows: 0,
      problems: [],
      dialect: { encoding: 'utf-8', bom: false, delimiter: ',', quote: '"' },
    });
    assert.deepEqual(query(`SELECT count(*) AS n FROM ${input.table}`), [{ n: 0 }]);
  });

  it('is idempotent: a re-run replaces the rows, and drops a staging table a crashed run left', async () => {
    const input = await job(`a,b\n${Array.from({ length: 2_500 }, (_, i) => `${i},x`).join('\n')}\n`);
    const first = await run(input);
    const db = new DatabaseSync(database);
    db.exec(`CREATE TABLE ${input.table}__staging (_line INTEGER, a TEXT, b TEXT)`);
    db.exec(`INSERT INTO ${input.table}__staging VALUES (1, 'stale', 'stale')`);
    db.close();
    const second = await run(input);
    assert.deepEqual(second, first);
    assert.deepEqual(query(`SELECT count(*) AS n, count(DISTINCT _line) AS lines FROM ${input.table}`), [
      { n: 2_500, lines: 2_500 },
    ]);
    assert.ok(!tables().includes(`${input.table}__staging`));
  });

  it('a record over 1 MiB (a runaway quote) fails with ERR_WEFT_FILES_CSV_MALFORMED and leaves nothing', async () => {
    const input = await job(`a,b\n1,2\n3,"${'x'.repeat(1_100_000)}\n4,5\n`);
    const err = await rejection(run(input));
    assert.equal(err.code, 'ERR_WEFT_FILES_CSV_MALFORMED');
    assert.match(err.message, /^Line 3: a record longer than 1048576 bytes/);
    assert.ok(!tables().some((t) => t.startsWith(input.table)));
  });

  it('a header over 1999 columns fails with ERR_WEFT_FILES_CSV_TOO_MANY_COLUMNS', async () => {
    const header = Array.from({ length: 2_000 }, (_, i) => `c${i}`).join(',');
    const err = await rejection(run(await job(`${header}\n`)));
    assert.equal(err.code, 'ERR_WEFT_FILES_CSV_TOO_MANY_COLUMNS');
  });

  it('a missing file fails with ERR_WEFT_FILES_INPUT_MISSING; an unsafe job with ERR_WEFT_FILES_INVALID_ARGUMENT', async () => {
    const missing = await rejection(
      run({ input: join(dir, 'gone.csv'), database, table: 'csv_x', maxBadRows: 0 }),
    );
    assert.equal(missing.code, 'ERR_WEFT_FILES_INPUT_MISSING');
    const base = await job('a\n1\n');
    for (const bad of [
      { table: 'x"; DROP TABLE y; --' },
      { table: 'sqlite_master' },
      { table: `t${'x'.repeat(60)}` },
      { maxBadRows: -1 },
      { batchSize: 0 },
    ]) {
      const err = await rejection(run({ ...base, ...bad }));
      assert.equal(err.code, 'ERR_WEFT_FILES_INVALID_ARGUMENT', JSON.stringify(bad));
    }
  });

  it('an SQLite failure (database path is a folder) rejects with the SQLite error', async () => {
    const err = await rejection(run({ ...(await job('a\n1\n')), database: dir }));
    assert.equal(err.code, 'ERR_SQLITE_ERROR');
  });
});

describe('ingestCsv cancelled', () => {
  it('stops when its task signal aborts: the old table stays, no staging table is left', async () => {
    const { dir, cleanup } = await tempDir('csv-abort');
    try {
      const database = join(dir, 'files.db');
      const input = join(dir, 'data.csv');
      await writeFile(input, 'a,b\n1,2\n');
      const job = { input, database, table: 'csv_abort', maxBadRows: 0 };
      await ingestCsv(job);
      await writeFile(input, `a,b\n${'3,4\n'.repeat(10_000)}`);
      const controller = new AbortController();
      controller.abort();
      const err = await rejection(ingestCsv.call({ signal: controller.signal, taskId: 1 }, job));
      assert.equal(err.name, 'AbortError');
      const db = new DatabaseSync(database);
      try {
        assert.deepEqual({ ...db.prepare('SELECT count(*) AS n FROM csv_abort').get() }, { n: 1 });
        const staging = db.prepare("SELECT name FROM sqlite_master WHERE name = 'csv_abort__staging'").all();
        assert.deepEqual(staging, []);
      } finally {
        db.close();
      }
    } finally {
      await cleanup();
    }
  });
});
