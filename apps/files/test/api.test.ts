// The HTTP API in-process: uploads (raw and multipart), type sniffing, limits, content with ranges and validators,
// auth, and error shapes. Jobs are queued but not run here (runJobs: false); processing has its own tests.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StoredUpload as Uploaded } from '../src/http/files.ts';
import { filesUnder, makeImage, type Running, startService } from './helpers.ts';

const sha256 = async (b: Buffer) =>
  (await import('node:crypto')).createHash('sha256').update(b).digest('hex');

describe('files API', () => {
  let s: Running;
  before(async () => {
    s = await startService({ maxUpload: 1024 * 1024, token: 's3cret' }, { runJobs: false });
  });
  after(() => s.stop());

  const auth = { authorization: 'Bearer s3cret' };
  const upload = (body: Buffer | string, headers: Record<string, string> = {}, query = '') =>
    fetch(`${s.url}/files${query}`, { method: 'POST', body, headers: { ...auth, ...headers } });

  it('stores a raw upload: 201 with id, sha256, size, sniffed type and its queued jobs', async () => {
    const jpeg = await makeImage('jpeg');
    const res = await upload(jpeg, { 'content-type': 'application/octet-stream' }, '?name=holiday.jpg');
    assert.equal(res.status, 201);
    const body = (await res.json()) as Uploaded;
    assert.equal(res.headers.get('location'), `/files/${body.id}`);
    assert.match(body.id, /^[0-9a-f-]{36}$/);
    assert.equal(body.name, 'holiday.jpg');
    assert.equal(body.size, jpeg.length);
    assert.equal(body.sha256, await sha256(jpeg));
    assert.equal(body.type, 'image/jpeg');
    assert.deepEqual(
      body.jobs.map((j) => [j.kind, j.state]),
      [['image', 'queued']],
    );

    const meta = (await (await fetch(`${s.url}/files/${body.id}`)).json()) as Uploaded & {
      jobs: { kind: string }[];
    };
    assert.equal(meta.sha256, body.sha256);
    assert.equal(meta.jobs.length, 1);
    const content = await fetch(`${s.url}/files/${body.id}/content`);
    assert.equal(content.status, 200);
    assert.equal(content.headers.get('content-type'), 'image/jpeg');
    assert.deepEqual(Buffer.from(await content.arrayBuffer()), jpeg);
  });

  it('takes a multipart upload and its file name', async () => {
    const png = await makeImage('png', 32, 32);
    const form = new FormData();
    form.append('file', new Blob([png]), 'tiny.png');
    const res = await fetch(`${s.url}/files`, { method: 'POST', body: form, headers: auth });
    assert.equal(res.status, 201);
    const body = (await res.json()) as Uploaded;
    assert.equal(body.name, 'tiny.png');
    assert.equal(body.type, 'image/png');
    assert.equal(body.size, png.length);
  });

  it('sniffs the type from the bytes, never the name or header: a forged extension loses', async () => {
    const png = await makeImage('png', 16, 16);
    const forged = (await (
      await upload(png, { 'content-type': 'text/plain' }, '?name=notes.txt')
    ).json()) as Uploaded;
    assert.equal(forged.type, 'image/png');
    assert.deepEqual(
      forged.jobs.map((j) => j.kind),
      ['image'],
    );
    const text = (await (
      await upload('just some words\n', { 'content-type': 'image/jpeg' }, '?name=photo.jpg')
    ).json()) as Uploaded;
    assert.equal(text.type, 'text/plain');
    assert.deepEqual(text.jobs, [], 'no image job for text named .jpg');
    const csv = (await (await upload('a,b,c\n1,2,3\n4,5,6\n', {}, '?name=data.bin')).json()) as Uploaded;
    assert.equal(csv.type, 'text/csv');
    assert.deepEqual(
      csv.jobs.map((j) => j.kind),
      ['csv'],
    );
  });

  it('sanitises names: no path, no control characters', async () => {
    const r = (await (
      await upload('x', { 'x-file-name': encodeURIComponent('../../etc/pass\u0001wd\u0000') })
    ).json()) as Uploaded;
    assert.equal(r.name, 'passwd');
    const dots = (await (await upload('x', {}, `?name=${encodeURIComponent('..')}`)).json()) as Uploaded;
    assert.equal(dots.name, 'upload');
  });

  it('answers 413 for an oversize upload, declared or streamed, and leaves no file behind', async () => {
    const before = filesUnder(s.dataDir).filter((f) => !f.endsWith('.db') && !f.includes('.db-'));
    const big = Buffer.alloc(1024 * 1024 + 1, 7);
    const declared = await upload(big);
    assert.equal(declared.status, 413);
    assert.equal(
      ((await declared.json()) as { error: { code: string } }).error.code,
      'ERR_WEFT_FILES_TOO_LARGE',
    );

    // Chunked, with no Content-Length: the limit is found while streaming.
    const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const url = new URL(`${s.url}/files`);
      const req = request(
        { host: url.hostname, port: url.port, path: '/files', method: 'POST', headers: auth },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => {
            body += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write(Buffer.alloc(64 * 1024, i));
      req.end();
    });
    assert.equal(streamed.status, 413);
    assert.match(streamed.body, /ERR_WEFT_FILES_TOO_LARGE/);
    const after = filesUnder(s.dataDir).filter((f) => !f.endsWith('.db') && !f.includes('.db-'));
    assert.deepEqual(after, before, 'no temp file, no stored object');
  });

  it('rejects an empty upload with 400', async () => {
    const res = await upload('');
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'ERR_WEFT_FILES_EMPTY');
  });

  it('needs the bearer token for writes, not for reads', async () => {
    const none = await fetch(`${s.url}/files`, { method: 'POST', body: 'x' });
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="files"');
    const wrong = await fetch(`${s.url}/files`, {
      method: 'POST',
      body: 'x',
      headers: { authorization: 'Bearer nope' },
    });
    assert.equal(wrong.status, 401);
    assert.equal(
      ((await wrong.json()) as { error: { code: string } }).error.code,
      'ERR_WEFT_FILES_UNAUTHORIZED',
    );
    assert.equal((await fetch(`${s.url}/files`)).status, 200);
  });

  it('serves content with ETag, 304, single ranges, suffix ranges and 416', async () => {
    const data = Buffer.from('0123456789abcdefghij');
    const { id, sha256: hash } = (await (await upload(data)).json()) as Uploaded;
    const url = `${s.url}/files/${id}/content`;
    const full = await fetch(url);
    assert.equal(full.headers.get('etag'), `"${hash}"`);
    assert.equal(full.headers.get('accept-ranges'), 'bytes');
    await full.arrayBuffer();
    assert.equal((await fetch(url, { headers: { 'if-none-match': `"${hash}"` } })).status, 304);

    const part = await fetch(url, { headers: { range: 'bytes=2-5' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), 'bytes 2-5/20');
    assert.equal(await part.text(), '2345');
    const suffix = await fetch(url, { headers: { range: 'bytes=-3' } });
    assert.equal(await suffix.text(), 'hij');
    const open = await fetch(url, { headers: { range: 'bytes=18-' } });
    assert.equal(await open.text(), 'ij');
    const bad = await fetch(url, { headers: { range: 'bytes=50-60' } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), 'bytes */20');
    const stale = await fetch(url, { headers: { range: 'bytes=0-1', 'if-range': '"other"' } });
    assert.equal(stale.status, 200, 'If-Range that does not match gets the whole object');
    await stale.arrayBuffer();
  });

  it('deletes a file: its record, content and jobs', async () => {
    const { id } = (await (await upload('a,b\n1,2\n')).json()) as Uploaded;
    const res = await fetch(`${s.url}/files/${id}`, { method: 'DELETE', headers: auth });
    assert.equal(res.status, 204);
    assert.equal((await fetch(`${s.url}/files/${id}`)).status, 404);
    assert.equal(existsSync(join(s.dataDir, 'objects', 'originals', id)), false);
    assert.equal((await fetch(`${s.url}/files/${id}`, { method: 'DELETE', headers: auth })).status, 404);
  });

  it('lists jobs by state with counts, and only retries dead jobs', async () => {
    const list = (await (await fetch(`${s.url}/jobs?state=queued`)).json()) as {
      counts: Record<string, number>;
      jobs: { id: number; state: string }[];
    };
    assert.ok(list.jobs.length > 0);
    assert.ok(list.jobs.every((j) => j.state === 'queued'));
    assert.equal(list.counts.queued, list.jobs.length);
    const retry = await fetch(`${s.url}/jobs/${list.jobs[0]!.id}/retry`, { method: 'POST', headers: auth });
    assert.equal(retry.status, 409);
    assert.equal(((await retry.json()) as { error: { code: string } }).error.code, 'ERR_WEFT_FILES_CONFLICT');
    assert.equal((await fetch(`${s.url}/jobs/999999/retry`, { method: 'POST', headers: auth })).status, 404);
    const badState = await fetch(`${s.url}/jobs?state=bogus`);
    assert.equal(badState.status, 400);
    assert.equal(
      ((await badState.json()) as { error: { code: string } }).error.code,
      'ERR_WEFT_FILES_BAD_REQUEST',
    );
    assert.equal((await fetch(`${s.url}/jobs/dead`)).status, 200);
  });

  it('answers unknown routes and ids with a typed 404', async () => {
    const res = await fetch(`${s.url}/nope`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'ERR_WEFT_FILES_NOT_FOUND');
    assert.equal((await fetch(`${s.url}/files/00000000-0000-0000-0000-000000000000`)).status, 404);
    assert.equal((await fetch(`${s.url}/files/not-an-id`)).status, 400);
  });
});

describe('GET /metrics with FILES_METRICS_TOKEN', () => {
  const metrics = { metrics: (_q: unknown, reply: { send(b: string): unknown }) => reply.send('up 1\n') };
  let locked: Running | undefined;
  let open: Running | undefined;
  after(async () => {
    await locked?.stop();
    await open?.stop();
  });

  it('needs the metrics token when one is set (and not the write token); is open without one', async () => {
    locked = await startService(
      { token: 'writer', metricsToken: 'scraper' },
      { runJobs: false, http: metrics as never },
    );
    const none = await fetch(`${locked.url}/metrics`);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /Bearer/);
    assert.equal(
      ((await none.json()) as { error: { code: string } }).error.code,
      'ERR_WEFT_FILES_UNAUTHORIZED',
    );
    const writer = await fetch(`${locked.url}/metrics`, { headers: { authorization: 'Bearer writer' } });
    assert.equal(writer.status, 401, 'the write token is not the metrics token');
    const scraper = await fetch(`${locked.url}/metrics`, { headers: { authorization: 'Bearer scraper' } });
    assert.equal(scraper.status, 200);
    assert.equal(await scraper.text(), 'up 1\n');
    open = await startService({}, { runJobs: false, http: metrics as never });
    assert.equal((await fetch(`${open.url}/metrics`)).status, 200);
  });
});
