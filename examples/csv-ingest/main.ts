// Ingests a CSV from stdin into SQLite with backpressure and a progress bar (see docs/stream.md):
//   node --conditions=weft-source examples/csv-ingest/main.ts people.db < people.csv
// The database is the first argument, else $CSV_INGEST_DB, else ':memory:'. Columns: id,name,email,amount.
// stdin → meter (bytes, lines) → csv-parse → validate → batch(1000) → insert, one transaction per batch.
// Progress goes to stderr (a redrawn line on a terminal, a log line every 2 s otherwise); stdout gets one summary
// line: `inserted=<rows> invalid=<rows> table=<rows in the table>`. Ctrl-C stops after the batch in flight.
import { fstatSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { pipeline } from 'node:stream/promises';
import { parse } from 'csv-parse';
import { batch, mapConcurrent, meter, progressBar } from 'weftjs/stream';

interface Person {
  id: number;
  name: string;
  email: string;
  amount: number;
}

const database = process.argv[2] ?? process.env.CSV_INGEST_DB ?? ':memory:';
const db = new DatabaseSync(database);
// busy_timeout makes a statement wait for another connection's lock instead of failing at once with "database is
// locked": first, as switching to WAL takes an exclusive lock that a reader opening the new file can hold for a moment.
// WAL then lets others read the table while batches go in.
db.exec('PRAGMA busy_timeout = 5000');
db.exec('PRAGMA journal_mode = WAL');
db.exec(`CREATE TABLE IF NOT EXISTS people (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, amount REAL NOT NULL)`);
const insert = db.prepare('INSERT OR REPLACE INTO people (id, name, email, amount) VALUES (?, ?, ?, ?)');

/** Inserts one batch in one transaction: all of it or none of it. */
function insertBatch(people: Person[]): number {
  db.exec('BEGIN');
  try {
    for (const p of people) insert.run(p.id, p.name, p.email, p.amount);
    db.exec('COMMIT');
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
  return people.length;
}

let invalid = 0;
/** Keeps the rows that make sense, typed; counts (and reports the first few of) the others. */
async function* validate(records: AsyncIterable<Record<string, string>>): AsyncGenerator<Person> {
  for await (const r of records) {
    const id = Number(r.id);
    const amount = Number(r.amount);
    if (Number.isSafeInteger(id) && id > 0 && r.name && r.email?.includes('@') && Number.isFinite(amount)) {
      yield { id, name: r.name, email: r.email, amount };
    } else if (++invalid <= 5) {
      process.stderr.write(`skipping invalid row ${JSON.stringify(r)}\n`);
    }
  }
}

// Counting newlines in the raw bytes gives rows read without parsing twice.
const countLines = (chunk: Buffer) => {
  let n = 0;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
  return n;
};
const input = meter<Buffer>({ name: 'csv', objectMode: false, items: countLines });
const stdin = fstatSync(0);
if (stdin.isFile()) input.totalBytes = stdin.size; // a redirected file: percent and ETA
progressBar(input, { unit: 'lines', intervalMs: process.stderr.isTTY ? 200 : 2_000 });

let inserted = 0;
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
try {
  await pipeline(
    process.stdin,
    input,
    parse({ columns: true, trim: true, skip_empty_lines: true }),
    validate,
    batch<Person>({ size: 1_000, maxWaitMs: 1_000 }),
    // node:sqlite is synchronous, so one batch at a time; with an async driver (pg, mysql2) raise concurrency.
    mapConcurrent(
      (people: Person[]) => {
        inserted += insertBatch(people);
      },
      { concurrency: 1 },
    ),
    { signal: stop.signal },
  );
} catch (err) {
  const { code, message } = err as { code?: string; message?: string };
  process.stderr.write(`csv-ingest failed after ${inserted} rows: ${code ?? ''} ${message}\n`);
  process.exitCode = stop.signal.aborted ? 130 : 1;
}
const { rows } = db.prepare('SELECT count(*) AS rows FROM people').get() as { rows: number };
console.log(`inserted=${inserted} invalid=${invalid} table=${rows}`);
db.close();
