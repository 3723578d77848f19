/**
 * One ingest run of the stream benchmark, in a child process of its own so its peak RSS is its own:
 *   node bench/stream-ingest.ts <streaming|naive> <file.csv> <file.db>
 * bench/stream.ts runs it compiled to JavaScript, as a service runs in production.
 * Prints one JSON line ({@link IngestResult}) on stdout.
 *
 * - streaming: file → meter → csv-parse → validate → batch(1000) → poolMap to a one-thread SQLite writer, 4 batches
 *   in flight. Parsing (main thread) and inserting (writer thread) overlap.
 * - naive: the whole file read into memory, parsed in one call (csv-parse/sync), validated into one array, then
 *   inserted on the main thread in transactions of 1000 rows.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getHeapSpaceStatistics } from 'node:v8';
import { parse } from 'csv-parse';
import { parse as parseSync } from 'csv-parse/sync';
import { Pool } from 'weftjs/pool';
import { batch, meter, poolMap } from 'weftjs/stream';
import { insertRows, openDatabase, type Row } from './fixtures/stream-tasks.ts';

export interface IngestResult {
  mode: string;
  rows: number;
  invalid: number;
  ms: number;
  /** Peak resident set size of the whole process (main thread, writer thread, SQLite), in bytes. */
  maxRss: number;
  /** Largest size of the main thread's V8 young generation (new space) seen, sampled every 100 ms, in bytes. */
  maxNewSpace: number;
  /** Streaming only: how often and how long the file reader waited for the parser, and batches for the writer. */
  readerPauses?: number;
  readerPausedMs?: number;
  writerWaits?: number;
  writerWaitedMs?: number;
}

const BATCH = 1_000;
const IN_FLIGHT = 4;

let invalid = 0;
/** `id,name,email,amount,created_at` → a typed row, or null when a field is wrong. */
function validate(r: string[]): Row | null {
  const id = Number(r[0]);
  const amount = Number(r[3]);
  const email = r[2] ?? '';
  if (
    r.length !== 5 ||
    !Number.isSafeInteger(id) ||
    id <= 0 ||
    !email.includes('@') ||
    !Number.isFinite(amount)
  ) {
    invalid++;
    return null;
  }
  return [id, r[1]!, email, Math.round(amount * 100), r[4]!];
}

async function streaming(csv: string, dbPath: string): Promise<Partial<IngestResult>> {
  const writer = new Pool<typeof import('./fixtures/stream-tasks.ts')>({
    // The benchmark runs a compiled copy of this file (see bench/stream.ts), next to a compiled task module.
    filename: new URL(
      `./fixtures/stream-tasks.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`,
      import.meta.url,
    ),
    minThreads: 1,
    maxThreads: 1,
    workerData: { db: dbPath },
  });
  const bytesIn = meter({ name: 'csv', objectMode: false });
  const validated = new Transform({
    objectMode: true,
    transform(record: string[], _encoding: BufferEncoding, callback: TransformCallback) {
      callback(null, validate(record) ?? undefined);
    },
  });
  const insert = poolMap(writer, 'insertBatch', { concurrency: IN_FLIGHT, ordered: false, transfer: false });
  let rows = 0;
  const count = new Writable({
    objectMode: true,
    write(n: number, _encoding, callback) {
      rows += n;
      callback();
    },
  });
  try {
    await pipeline(
      createReadStream(csv),
      bytesIn,
      parse({ from_line: 2 }),
      validated,
      batch<Row>({ size: BATCH }),
      insert,
      count,
    );
  } finally {
    await writer.close();
  }
  const input = bytesIn.snapshot();
  const waits = insert.stats();
  return {
    rows,
    readerPauses: input.pauses,
    readerPausedMs: input.pausedMs,
    writerWaits: waits.pauses,
    writerWaitedMs: waits.pausedMs,
  };
}

function naive(csv: string, dbPath: string): Partial<IngestResult> {
  const records = parseSync(readFileSync(csv), { from_line: 2 }) as string[][];
  const valid: Row[] = [];
  for (const r of records) {
    const row = validate(r);
    if (row) valid.push(row);
  }
  const { db, insert } = openDatabase(dbPath);
  let rows = 0;
  for (let i = 0; i < valid.length; i += BATCH) rows += insertRows(db, insert, valid.slice(i, i + BATCH));
  db.close();
  return { rows };
}

const [mode, csv, dbPath] = process.argv.slice(2);
if ((mode !== 'streaming' && mode !== 'naive') || !csv || !dbPath) {
  process.stderr.write('usage: node bench/stream-ingest.ts <streaming|naive> <file.csv> <file.db>\n');
  process.exit(2);
}
let maxNewSpace = 0;
const sampler = setInterval(() => {
  const space = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  maxNewSpace = Math.max(maxNewSpace, space?.space_size ?? 0);
}, 100);
sampler.unref();
const started = performance.now();
const result = mode === 'streaming' ? await streaming(csv, dbPath) : naive(csv, dbPath);
const ms = performance.now() - started;
clearInterval(sampler);
const out: IngestResult = {
  mode,
  rows: 0,
  ...result,
  invalid,
  ms,
  // resourceUsage().maxRSS is in KiB.
  maxRss: process.resourceUsage().maxRSS * 1024,
  maxNewSpace,
};
process.stdout.write(`${JSON.stringify(out)}\n`);
