// CSV dialects: semicolon-, tab- and pipe-separated files load into their real columns (they were read on commas
// only: one column named `name_city_zip`, and the job "completed"), quotes are honoured while detecting, encodings
// are read (UTF-8 with or without BOM, UTF-16 LE/BE with BOM, Latin-1), the dialect is in the result, and a file
// that is no table under any dialect fails with ERR_WEFT_FILES_CSV_INCONSISTENT instead of completing wrongly.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { ingestCsv } from '../../src/processors/csv.ts';
import { detectDelimiter } from '../../src/processors/dialect.ts';
import { rejection, tempDir } from './helpers.ts';

describe('CSV dialects', () => {
  let dir = '';
  let cleanup = async () => {};
  let database = '';
  let n = 0;
  before(async () => {
    ({ dir, cleanup } = await tempDir('csv-dialect'));
    database = join(dir, 'files.db');
  });
  after(() => cleanup());

  /** Loads `bytes` (called directly: the pool adds nothing to what is tested here) and returns result and rows. */
  async function load(bytes: Buffer | string) {
    const input = join(dir, `${++n}.csv`);
    await writeFile(input, bytes);
    const table = `csv_${n}`;
    const result = await ingestCsv({ input, database, table, maxBadRows: 10 });
    const db = new DatabaseSync(database);
    try {
      const rows = db.prepare(`SELECT * FROM ${table} ORDER BY _line`).all();
      return { result, rows: rows.map(({ _line, ...r }) => ({ ...r })) };
    } finally {
      db.close();
    }
  }

  async function failure(bytes: Buffer | string) {
    const input = join(dir, `${++n}.csv`);
    await writeFile(input, bytes);
    return rejection(ingestCsv({ input, database, table: `csv_${n}`, maxBadRows: 1_000 }));
  }

  it('semicolon, tab and pipe files load into their columns, the delimiter recorded', async () => {
    for (const delimiter of [';', '\t', '|', ','] as const) {
      const text = ['name', 'city', 'zip'].join(delimiter);
      const body = [
        ['Ada', 'London', 'E1'],
        ['Alan', 'Wilmslow', 'SK9'],
        ['Grace', 'Arlington', '22201'],
      ].map((r) => r.join(delimiter));
      const { result, rows } = await load(`${text}\n${body.join('\n')}\n`);
      assert.deepEqual(result.columns, ['name', 'city', 'zip'], JSON.stringify(delimiter));
      assert.equal(result.rows, 3);
      assert.deepEqual(result.dialect, { encoding: 'utf-8', bom: false, delimiter, quote: '"' });
      assert.deepEqual(rows[1], { name: 'Alan', city: 'Wilmslow', zip: 'SK9' });
    }
  });

  it('delimiters inside quotes do not mislead the detection', async () => {
    // Two semicolons a line against one comma: counting characters would choose the semicolon.
    const csv = 'name,note\n"Smith; John","a; b; c"\n"Doe; Jane","d; e"\n"Roe; Rick","f;g;h"\n';
    const { result, rows } = await load(csv);
    assert.equal(result.dialect.delimiter, ',');
    assert.deepEqual(rows[0], { name: 'Smith; John', note: 'a; b; c' });
    // And the other way round: semicolon-separated, commas inside the quotes (decimal commas, as in Europe).
    const eu = 'item;price;note\nbread;"2,50";"fresh, warm"\nmilk;"1,10";"cold, 1,5 l"\n';
    const second = await load(eu);
    assert.equal(second.result.dialect.delimiter, ';');
    assert.deepEqual(second.rows[1], { item: 'milk', price: '1,10', note: 'cold, 1,5 l' });
  });

  it("single-quoted fields are read with ' as the quote; an apostrophe alone does not make it one", async () => {
    const { result, rows } = await load("name,city\n'Smith, John','Paris, TX'\n'Doe, Jane','Rome, GA'\n");
    assert.equal(result.dialect.quote, "'");
    assert.deepEqual(rows[0], { name: 'Smith, John', city: 'Paris, TX' });
    assert.deepEqual(detectDelimiter('name,quote\nO\'Brien,"it\'s, fine"\nD\'Arcy,"ok"\n'), {
      delimiter: ',',
      quote: '"',
    });
  });

  it('reads UTF-8 with and without BOM, UTF-16 LE and BE with BOM, and Latin-1', async () => {
    const text = 'name;city\nZoë;Zürich\nJosé;Málaga\nÅsa;Malmö\n';
    const expected = [
      { name: 'Zoë', city: 'Zürich' },
      { name: 'José', city: 'Málaga' },
      { name: 'Åsa', city: 'Malmö' },
    ];
    const be = Buffer.from(text, 'utf16le').swap16();
    const cases: [string, Buffer, string, boolean][] = [
      ['UTF-8', Buffer.from(text), 'utf-8', false],
      ['UTF-8 BOM', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]), 'utf-8', true],
      [
        'UTF-16 LE',
        Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]),
        'utf-16le',
        true,
      ],
      ['UTF-16 BE', Buffer.concat([Buffer.from([0xfe, 0xff]), be]), 'utf-16be', true],
      ['Latin-1', Buffer.from(text, 'latin1'), 'windows-1252', false],
    ];
    for (const [what, bytes, encoding, bom] of cases) {
      const { result, rows } = await load(bytes);
      assert.deepEqual(result.columns, ['name', 'city'], what);
      assert.deepEqual(result.dialect, { encoding, bom, delimiter: ';', quote: '"' }, what);
      assert.deepEqual(rows, expected, what);
    }
    // windows-1252, as Excel writes it: 0x80 is the euro sign.
    const euro = await load(Buffer.from([...Buffer.from('item,price\ncoffee,3'), 0x80, 0x0a]));
    assert.deepEqual(euro.rows, [{ item: 'coffee', price: '3€' }]);
  });

  it('Latin-1 bytes far past the sample, after ASCII only, switch the file to Latin-1', async () => {
    const filler = Array.from({ length: 4_000 }, (_, i) => `row${i},plain ascii text`).join('\n');
    const tail = Buffer.from('\nlast,Zürich\n', 'latin1');
    const { result, rows } = await load(Buffer.concat([Buffer.from(`name,note\n${filler}`), tail]));
    assert.ok(filler.length > 64 * 1024);
    assert.equal(result.dialect.encoding, 'windows-1252');
    assert.deepEqual(rows.at(-1), { name: 'last', note: 'Zürich' });
    assert.equal(result.rows, 4_001);
  });

  it('UTF-8 text then bytes that are not UTF-8 fails with ERR_WEFT_FILES_CSV_ENCODING', async () => {
    const filler = Array.from({ length: 12_000 }, (_, i) => `row${i},plain ascii text`).join('\n');
    const bytes = Buffer.concat([
      Buffer.from(`name,note\nfirst,Zoë\n${filler}`),
      Buffer.from('\nlast,Zürich\n', 'latin1'),
    ]);
    const err = await failure(bytes);
    assert.equal(err.code, 'ERR_WEFT_FILES_CSV_ENCODING');
    assert.match(err.message, /not valid UTF-8 after byte \d+.*mixes encodings/);
  });

  it('a file that is no table under any dialect fails with ERR_WEFT_FILES_CSV_INCONSISTENT, loading nothing', async () => {
    const prose = [
      'Dear team, thanks for the meeting.',
      'We agreed on three things; the first is the budget.',
      'The second: hiring | the third, the roadmap.',
      'Nothing else was decided',
      'See you next week, all of you, as usual.',
      'Best',
    ].join('\n');
    const err = await failure(`${prose}\n`);
    assert.equal(err.code, 'ERR_WEFT_FILES_CSV_INCONSISTENT');
    assert.match(err.message, /does not parse into consistent columns: \d+ records do not fit/);
    assert.ok(Array.isArray(err.problems) && err.problems.length > 0, 'the problems say where');
    const db = new DatabaseSync(database);
    try {
      const left = db.prepare(`SELECT name FROM sqlite_master WHERE name LIKE 'csv_${n}%'`).all();
      assert.deepEqual(left, []);
    } finally {
      db.close();
    }
  });
});
