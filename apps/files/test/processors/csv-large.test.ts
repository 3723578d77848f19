import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, it } from 'node:test';
import { Pool } from 'weftjs/pool';
import { TASK_TIMEOUT, tempDir } from './helpers.ts';

type MeasureTasks = typeof import('./fixtures/measure-tasks.ts');

const ROWS = 200_000;
const MiB = 1024 * 1024;

let dir = '';
let cleanup = async () => {};
before(async () => {
  ({ dir, cleanup } = await tempDir('csv-large'));
});
after(() => cleanup());

/** Writes a CSV of `rows` rows of six columns, generated as a stream (the test process never holds it either). */
async function writeCsv(path: string, rows: number): Promise<void> {
  function* lines() {
    yield 'id,name,email,city,amount,created_at\n';
    let chunk = '';
    for (let i = 1; i <= rows; i++) {
      chunk += `${i},"Name ${i}, Jr.",user${i}@example.com,City ${i % 97},${(i * 7.31).toFixed(2)},2024-01-${String((i % 28) + 1).padStart(2, '0')}\n`;
      if (i % 5_000 === 0) {
        yield chunk;
        chunk = '';
      }
    }
    yield chunk;
  }
  await pipeline(Readable.from(lines()), createWriteStream(path));
}

it('streams a 200k-row CSV into SQLite with the thread heap bounded, well below the file size', async (t) => {
  const input = join(dir, 'large.csv');
  await writeCsv(input, ROWS);
  const fileSize = (await stat(input)).size;
  // Under this cap, a thread that read the file whole (or all its records) would die out of memory.
  const pool = new Pool<MeasureTasks>({
    filename: new URL('./fixtures/measure-tasks.ts', import.meta.url),
    maxThreads: 1,
    resourceLimits: { maxOldGenerationSizeMb: 48 },
  });
  try {
    const database = join(dir, 'files.db');
    const job = { input, database, table: 'csv_large', maxBadRows: 0 };
    const { result, heapBefore, heapPeak, ms } = await pool.run('ingestMeasured', [job], TASK_TIMEOUT);
    assert.equal(result.rows, ROWS);
    assert.equal(result.badRows, 0);
    const growth = heapPeak - heapBefore;
    t.diagnostic(
      `${ROWS} rows, ${(fileSize / MiB).toFixed(1)} MiB in ${ms.toFixed(0)} ms = ${Math.round((ROWS / ms) * 1000)} rows/s; ` +
        `heap ${(heapBefore / MiB).toFixed(1)} MiB before, peak +${(growth / MiB).toFixed(1)} MiB`,
    );
    // Streaming holds a few batches; reading the file or its records whole would hold more than the file.
    assert.ok(
      growth < fileSize / 2,
      `heap grew ${(growth / MiB).toFixed(1)} MiB for a ${(fileSize / MiB).toFixed(1)} MiB file`,
    );
    const db = new DatabaseSync(database);
    try {
      const last = db.prepare('SELECT _line, id, name, amount FROM csv_large WHERE id = ?').get(String(ROWS));
      assert.deepEqual(
        { ...last },
        { _line: ROWS + 1, id: String(ROWS), name: `Name ${ROWS}, Jr.`, amount: (ROWS * 7.31).toFixed(2) },
      );
    } finally {
      db.close();
    }
  } finally {
    await pool.close();
  }
});
