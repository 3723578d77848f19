// CSV dialects end to end: upload → sniffed as text/csv (UTF-16 and Latin-1 too) → loaded in the pool with the
// detected dialect recorded in the job's result; a file that is no table fails its job, dead at once, with
// ERR_WEFT_FILES_CSV_INCONSISTENT (it used to complete with one column named after the whole header).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FilesEvent } from '../src/events/types.ts';
import { sniffType } from '../src/upload.ts';
import { type Running, startService, waitFor } from './helpers.ts';

interface Uploaded {
  id: string;
  type: string;
  jobs: { id: number; kind: string }[];
}

interface CsvJob {
  state: string;
  attempts: number;
  errorCode: string | null;
  result: { table: string; columns: string[]; rows: number; dialect: Record<string, unknown> } | null;
}

describe('CSV dialects through the service', () => {
  let s: Running;
  before(async () => {
    s = await startService({ concurrency: 2, maxAttempts: 3 });
  });
  after(() => s.stop());

  async function upload(body: Buffer | string, name: string): Promise<Uploaded> {
    const res = await fetch(`${s.url}/files?name=${name}`, { method: 'POST', body });
    const text = await res.text();
    assert.equal(res.status, 201, text);
    return JSON.parse(text) as Uploaded;
  }

  /** Uploads, waits for its one job to finish, returns the job as the API shows it. */
  async function processed(body: Buffer | string, name: string): Promise<CsvJob> {
    const up = await upload(body, name);
    assert.equal(up.type, 'text/csv', name);
    assert.deepEqual(
      up.jobs.map((j) => j.kind),
      ['csv'],
    );
    const id = up.jobs[0]!.id;
    await waitFor(
      s.events,
      (e): e is Extract<FilesEvent, { type: 'job.completed' | 'job.failed' }> =>
        (e.type === 'job.completed' || (e.type === 'job.failed' && e.data.dead)) && e.data.jobId === id,
      30_000,
      `job ${id} (${name}) to finish`,
    );
    return (await (await fetch(`${s.url}/jobs/${id}`)).json()) as CsvJob;
  }

  it('a semicolon file gets its three columns and the dialect in its result', async () => {
    const job = await processed('name;city;zip\nAda;London;E1\nAlan;Wilmslow;SK9\n', 'semi.csv');
    assert.equal(job.state, 'completed');
    assert.deepEqual(job.result?.columns, ['name', 'city', 'zip']);
    assert.equal(job.result?.rows, 2);
    assert.deepEqual(job.result?.dialect, { encoding: 'utf-8', bom: false, delimiter: ';', quote: '"' });
    const rows = s.db!.prepare(`SELECT name, zip FROM ${job.result!.table} ORDER BY _line`).all();
    assert.deepEqual(
      rows.map((r) => ({ ...r })),
      [
        { name: 'Ada', zip: 'E1' },
        { name: 'Alan', zip: 'SK9' },
      ],
    );
  });

  it('UTF-16 (with BOM) and Latin-1 files are sniffed as CSV and loaded', async () => {
    const text = 'name\tcity\nZoë\tZürich\nÅsa\tMalmö\n';
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const a = await processed(utf16, 'utf16.tsv');
    assert.equal(a.state, 'completed');
    assert.deepEqual(a.result?.dialect, { encoding: 'utf-16le', bom: true, delimiter: '\t', quote: '"' });
    const b = await processed(Buffer.from(text, 'latin1'), 'latin1.tsv');
    assert.equal(b.state, 'completed');
    assert.equal(b.result?.dialect.encoding, 'windows-1252');
    for (const job of [a, b]) {
      const rows = s.db!.prepare(`SELECT city FROM ${job.result!.table} ORDER BY _line`).all();
      assert.deepEqual(
        rows.map((r) => r.city),
        ['Zürich', 'Malmö'],
      );
    }
  });

  it('a file that is no table: the job fails, dead at once, ERR_WEFT_FILES_CSV_INCONSISTENT', async () => {
    // Commas on most lines (so it is sniffed as CSV), but never as many as on the first.
    const prose = 'Hello, all\nsee the notes, below, twice\none, two, three, four\nx, y, z\nno comma here\n';
    const job = await processed(prose, 'notes.csv');
    assert.equal(job.state, 'dead');
    assert.equal(job.errorCode, 'ERR_WEFT_FILES_CSV_INCONSISTENT');
    assert.equal(job.attempts, 1, 'no retry: another attempt cannot fix the file');
  });

  it('sniffing: text in UTF-16 with BOM or Latin-1 is text; control characters mean binary', async () => {
    const csv = 'a;b\n1;2\n3;4\n';
    assert.equal(
      await sniffType(Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(csv, 'utf16le').swap16()])),
      'text/csv',
    );
    assert.equal(
      await sniffType(Buffer.from('prose in Latin-1: café crème\nà la carte\n', 'latin1')),
      'text/plain',
    );
    assert.equal(await sniffType(Buffer.from('name,city\nJosé,Málaga\nZoë,Zürich\n', 'latin1')), 'text/csv');
    assert.equal(
      await sniffType(Buffer.from([0xe9, 0x01, 0x02, 0x41, 0x42, 0x0a])),
      'application/octet-stream',
    );
    assert.equal(
      await sniffType(Buffer.from(csv, 'utf16le')),
      'application/octet-stream',
      'UTF-16 without a BOM',
    );
  });
});
