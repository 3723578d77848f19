// Jobs end to end in one process: upload → queue → processor in the thread pool → outcome, derived outputs and
// events; failures that must not take the service down (corrupt image, pixel bomb, broken CSV); retry.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import type { FilesEvent } from '../src/events/types.ts';
import { makeImage, type Running, startService, waitFor } from './helpers.ts';
import { pngHeader } from './processors/helpers.ts';

interface Uploaded {
  id: string;
  jobs: { id: number; kind: string }[];
}

describe('jobs', () => {
  let s: Running;
  before(async () => {
    s = await startService({ concurrency: 2, csvMaxBadRows: 2, maxAttempts: 3 });
  });
  after(() => s.stop());

  const upload = async (body: Buffer | string, name: string): Promise<Uploaded> => {
    const res = await fetch(`${s.url}/files?name=${encodeURIComponent(name)}`, { method: 'POST', body });
    assert.equal(res.status, 201, await res.clone().text());
    return (await res.json()) as Uploaded;
  };
  /** The first completion or failure of job `id`. */
  const outcome = (id: number, after = 0) =>
    waitFor(
      s.events,
      (e): e is Extract<FilesEvent, { type: 'job.completed' | 'job.failed' }> =>
        (e.type === 'job.completed' || e.type === 'job.failed') && e.data.jobId === id,
      30_000,
      `job ${id} to finish`,
      after,
    );

  it('makes a rotated thumbnail and a display copy of an image, and serves them', async () => {
    // 600×400 stored with EXIF orientation 6 (rotate 90°): upright it is 400×600.
    const jpeg = await makeImage('jpeg', 600, 400, 6);
    const up = await upload(jpeg, 'portrait.jpg');
    const done = outcome(up.jobs[0]!.id);
    const event = await done;
    assert.equal(event.type, 'job.completed');

    const file = (await (await fetch(`${s.url}/files/${up.id}`)).json()) as {
      jobs: { state: string; result: { metadata: { orientation: number; width: number } } }[];
      derived: { name: string; width: number; height: number; url: string; type: string }[];
    };
    assert.equal(file.jobs[0]!.state, 'completed');
    assert.equal(file.jobs[0]!.result.metadata.orientation, 6);
    const byName = Object.fromEntries(file.derived.map((d) => [d.name, d]));
    assert.deepEqual([byName['thumbnail.webp']!.width, byName['thumbnail.webp']!.height], [256, 256]);
    assert.deepEqual(
      [byName['display.webp']!.width, byName['display.webp']!.height],
      [400, 600],
      'auto-rotated',
    );

    const res = await fetch(`${s.url}${byName['display.webp']!.url}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/webp');
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['webp', 400, 600]);
  });

  it('dead-letters a corrupt image with a clear error, and the service keeps serving', async () => {
    const jpeg = await makeImage('jpeg', 800, 600);
    const up = await upload(jpeg.subarray(0, 600), 'broken.jpg');
    const event = await outcome(up.jobs[0]!.id);
    assert.equal(event.type, 'job.failed');
    if (event.type !== 'job.failed') return;
    assert.equal(event.data.dead, true, 'a corrupt image is not retried');
    assert.equal(event.data.code, 'ERR_WEFT_FILES_BAD_IMAGE');
    const dead = (await (await fetch(`${s.url}/jobs/dead`)).json()) as {
      jobs: { id: number; lastError: string }[];
    };
    const job = dead.jobs.find((j) => j.id === up.jobs[0]!.id);
    assert.match(job?.lastError ?? '', /^not a readable image \(/);
    assert.ok(!job?.lastError.includes(s.dataDir), 'no server path in what users see');
    assert.equal((await fetch(`${s.url}/health/live`)).status !== 500, true);
    assert.equal((await fetch(`${s.url}/files/${up.id}`)).status, 200);
  });

  it('rejects a 50,000 × 50,000 PNG header by the pixel limit without decoding it', async () => {
    const up = await upload(pngHeader(50_000, 50_000), 'bomb.png');
    const event = await outcome(up.jobs[0]!.id);
    assert.equal(event.type, 'job.failed');
    if (event.type === 'job.failed') assert.equal(event.data.code, 'ERR_WEFT_FILES_PIXEL_LIMIT');
  });

  it('ingests a CSV into a table, counting malformed rows without failing', async () => {
    const csv = 'Name,Age,City\nann,31,Oslo\nbob,27\ncid,45,Rome\n';
    const up = await upload(csv, 'people.csv');
    const event = await outcome(up.jobs[0]!.id);
    assert.equal(event.type, 'job.completed');
    const job = (await (await fetch(`${s.url}/jobs/${up.jobs[0]!.id}`)).json()) as {
      result: {
        table: string;
        rows: number;
        badRows: number;
        columns: string[];
        problems: { line: number }[];
      };
    };
    assert.equal(job.result.rows, 2);
    assert.equal(job.result.badRows, 1);
    assert.deepEqual(job.result.columns, ['name', 'age', 'city']);
    assert.equal(job.result.problems[0]!.line, 3);
    const rows = s.db!.prepare(`SELECT name, city FROM ${job.result.table} ORDER BY _line`).all();
    assert.deepEqual(
      rows.map((r) => ({ ...r })),
      [
        { name: 'ann', city: 'Oslo' },
        { name: 'cid', city: 'Rome' },
      ],
    );
  });

  it('dead-letters a CSV with too many broken rows; a retry runs it again', async () => {
    const up = await upload('a,b\n1,2,3\n4,5,6\n7,8,9\n10,11\n', 'bad.csv');
    const first = await outcome(up.jobs[0]!.id);
    assert.equal(first.type, 'job.failed');
    if (first.type === 'job.failed') assert.equal(first.data.code, 'ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS');
    const again = outcome(up.jobs[0]!.id, s.events.count);
    const retry = await fetch(`${s.url}/jobs/${up.jobs[0]!.id}/retry`, { method: 'POST' });
    assert.equal(retry.status, 202);
    assert.equal(((await retry.json()) as { state: string }).state, 'queued');
    assert.equal((await again).type, 'job.failed', 'ran again, and failed the same way');
  });
});
