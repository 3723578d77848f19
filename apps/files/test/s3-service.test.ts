// The service with its file bytes in S3-compatible storage (STORAGE_URL, s3rver on loopback): upload, process,
// serve with ranges, delete — the same API as on local disk.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FilesEvent } from '../src/events/types.ts';
import { makeImage, type Running, startService, waitFor } from './helpers.ts';
import { loopbackS3rver } from './services.ts';

describe('files on S3-compatible storage', () => {
  const dir = mkdtempSync(join(tmpdir(), 'files-s3-'));
  const server = loopbackS3rver(dir, 'media');
  let s: Running;
  before(async () => {
    const { port } = await server.run();
    s = await startService({
      storageUrl: `s3://S3RVER:S3RVER@media/files?endpoint=http://127.0.0.1:${port}`,
    });
  });
  after(async () => {
    await s.stop();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores the upload in the bucket, processes it from there, and serves both', async () => {
    const jpeg = await makeImage('jpeg', 900, 600);
    const res = await fetch(`${s.url}/files?name=s3.jpg`, { method: 'POST', body: jpeg });
    assert.equal(res.status, 201);
    const up = (await res.json()) as { id: string; jobs: { id: number }[] };
    assert.ok(await s.storage.stat(`originals/${up.id}`), 'the original is in the bucket');
    const done = await waitFor(
      s.events,
      (e): e is Extract<FilesEvent, { type: 'job.completed' | 'job.failed' }> =>
        (e.type === 'job.completed' || e.type === 'job.failed') && e.data.jobId === up.jobs[0]!.id,
      30_000,
      'the image job',
    );
    assert.equal(done.type, 'job.completed');
    const thumb = await fetch(`${s.url}/files/${up.id}/derived/thumbnail.webp`);
    assert.equal(thumb.status, 200);
    assert.equal(thumb.headers.get('content-type'), 'image/webp');
    assert.ok((await thumb.arrayBuffer()).byteLength > 100);
    const part = await fetch(`${s.url}/files/${up.id}/content`, { headers: { range: 'bytes=0-1' } });
    assert.equal(part.status, 206);
    assert.deepEqual([...new Uint8Array(await part.arrayBuffer())], [0xff, 0xd8], 'a JPEG starts FF D8');

    assert.equal((await fetch(`${s.url}/files/${up.id}`, { method: 'DELETE' })).status, 204);
    assert.equal(await s.storage.stat(`originals/${up.id}`), undefined);
    assert.equal(await s.storage.stat(`derived/${up.id}/thumbnail.webp`), undefined);
  });
});
