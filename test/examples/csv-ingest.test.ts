import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'weft-csv-ingest-'));
const children = new Set<ChildProcess>();
after(() => {
  for (const child of children)
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the example with `stdin`: a file descriptor, text written to a pipe that is then closed, or a function given
 * the child to write to its open pipe itself. Fails after `ms`.
 */
function ingest(
  args: string[],
  stdin: number | string | ((child: ChildProcess) => void),
  env: NodeJS.ProcessEnv = {},
  ms = 60_000,
): Promise<Run> {
  const child = spawn(
    process.execPath,
    ['--conditions=weft-source', 'examples/csv-ingest/main.ts', ...args],
    {
      cwd: root,
      env: { ...process.env, CSV_INGEST_DB: undefined, ...env },
      stdio: [typeof stdin === 'number' ? stdin : 'pipe', 'pipe', 'pipe'],
    },
  );
  children.add(child);
  if (typeof stdin === 'string') child.stdin!.end(stdin);
  if (typeof stdin === 'function') stdin(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`csv-ingest did not exit within ${ms} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, ms);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** `rows` valid people, then the given extra lines. */
function csv(rows: number, extra: string[] = []): string {
  const lines = ['id,name,email,amount'];
  for (let i = 1; i <= rows; i++)
    lines.push(`${i},Person ${i},person${i}@example.com,${(i * 1.25).toFixed(2)}`);
  return `${[...lines, ...extra].join('\n')}\n`;
}

function countRows(file: string): { rows: number; sum: number } {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    return db.prepare('SELECT count(*) AS rows, sum(amount) AS sum FROM people').get() as {
      rows: number;
      sum: number;
    };
  } finally {
    db.close();
  }
}

describe('examples/csv-ingest', () => {
  it('ingests a CSV file from stdin into SQLite, skips invalid rows, and shows progress', async () => {
    const file = join(dir, 'people.csv');
    writeFileSync(
      file,
      csv(5_000, ['0,Zero,zero@example.com,1', '7,No Email,not-an-email,2', 'x,Bad Id,b@x.io,3']),
    );
    const database = join(dir, 'people.db');
    const fd = openSync(file, 'r');
    const run = await ingest([database], fd);
    const output = `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
    assert.equal(run.code, 0, output);
    assert.equal(run.stdout.trim(), 'inserted=5000 invalid=3 table=5000', output);
    const { rows, sum } = countRows(database);
    assert.equal(rows, 5_000);
    assert.equal(sum, (1.25 * 5_000 * 5_001) / 2, 'every amount made it, unchanged');
    // stdin is a file, so the bar knows the total; stderr is not a terminal, so it logs whole lines.
    const last = run.stderr
      .trimEnd()
      .split('\n')
      .findLast((l) => l.startsWith('csv '));
    assert.ok(last?.includes('100.0%') && last.endsWith('done'), output);
    assert.ok(last?.includes('5,004 lines'), output);
    assert.ok(run.stderr.includes('skipping invalid row {"id":"x"'), output);
  });

  it('reads from a pipe (no total known), into :memory: by default or the database in CSV_INGEST_DB', async () => {
    const database = join(dir, 'piped.db');
    const run = await ingest([], csv(2_500));
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.trim(), 'inserted=2500 invalid=0 table=2500', run.stderr);
    assert.ok(!run.stderr.includes('%'), 'no percent without a total');
    const viaEnv = await ingest([], csv(10), { CSV_INGEST_DB: database });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(viaEnv.stdout.trim(), 'inserted=10 invalid=0 table=10');
    assert.equal(countRows(database).rows, 10);
  });

  it('fails with exit code 1 and a message on malformed CSV, keeping the batches already committed', async () => {
    const database = join(dir, 'broken.db');
    const run = await ingest([database], csv(2_500, ['9999,Too,Many,Fields,Here']));
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /csv-ingest failed after \d+ rows: CSV_RECORD_INCONSISTENT_COLUMNS/);
    const { rows } = countRows(database);
    assert.ok(rows % 1_000 === 0 && rows <= 2_000, `whole batches only, got ${rows}`);
    assert.match(run.stdout, new RegExp(`table=${rows}`));
  });

  it('stops on SIGINT with exit code 130, keeping what was committed', async () => {
    const database = join(dir, 'interrupted.db');
    let waited: unknown;
    const run = await ingest([database], (child) => {
      // 2 500 rows, then the start of a row and no end of input (csv-parse holds a record until the next byte): two
      // full batches go out at once, the last 500 rows after maxWaitMs. The input then stays open until the signal.
      child.stdin!.write(`${csv(2_500)}2501,Part`);
      void poll(() => rowsIfReady(database) === 2_500, 30_000).then((ok) => {
        if (ok) child.kill('SIGINT');
        else {
          waited = 'timed out after 30 s waiting for 2500 rows in the database';
          child.kill('SIGKILL');
        }
      });
    });
    assert.equal(waited, undefined);
    assert.equal(run.code, 130, run.stderr);
    assert.match(run.stderr, /csv-ingest failed after 2500 rows: ABORT_ERR/);
    assert.equal(run.stdout.trim(), 'inserted=2500 invalid=0 table=2500');
    assert.equal(countRows(database).rows, 2_500);
  });
});

/**
 * Checks `condition` every 20 ms (each check opens the database) until it holds; false after `ms`, and the polling
 * stops then too.
 */
async function poll(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

/** Rows in the table, or -1 while the database or its table does not exist yet. */
function rowsIfReady(file: string): number {
  try {
    return countRows(file).rows;
  } catch {
    return -1;
  }
}
