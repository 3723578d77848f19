// Resumable uploads (tus 1.0 at /uploads): tus-js-client resumes an upload cut half-way, the file is whole and
// processed once; checksum, termination, expiration, limits, auth; a finished upload whose recording failed is
// recorded when the client asks again; an upload started on one node resumes on another (one machine's processes
// sharing the SQLite file, and machines sharing Redis and S3).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as tus from 'tus-js-client';
import { loadConfig } from '../src/config.ts';
import { silentLogger } from '../src/logger.ts';
import { createService } from '../src/service.ts';
import type { Storage } from '../src/storage/types.ts';
import { faultProxy } from './fault-proxy.ts';
import { makeImage, type Running, startService, until } from './helpers.ts';
import { DATABASE_URL, REDIS_URL, serviceSkip, sharedBackends } from './services.ts';

const TUS = { 'tus-resumable': '1.0.0' };
const run = promisify(execFile);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A CSV of about `bytes` bytes (a file the service processes: it becomes a table). */
function csvOf(bytes: number): Buffer {
  const lines = ['id,name,amount'];
  for (let i = 0, n = 15; n < bytes; i++) {
    const line = `${i},name-${i.toString(36)},${(i * 7) % 1000}.${i % 100}`;
    lines.push(line);
    n += line.length + 1;
  }
  return Buffer.from(`${lines.join('\n')}\n`);
}

interface Sent {
  url: string;
  fileId: string;
  /** Every `bytesSent` tus-js-client reported, in order. */
  progress: number[];
}

/** Uploads `body` with tus-js-client; rejects with its error. */
function tusUpload(body: Buffer, options: tus.UploadOptions & { onStart?: (u: tus.Upload) => void }) {
  return new Promise<Sent>((resolve, reject) => {
    const progress: number[] = [];
    const upload = new tus.Upload(body, {
      retryDelays: [],
      ...options,
      onProgress(sent, total) {
        progress.push(sent);
        options.onProgress?.(sent, total);
      },
      onError: reject,
      onSuccess: ({ lastResponse }) =>
        resolve({ url: upload.url ?? '', fileId: lastResponse.getHeader('x-weft-file-id') ?? '', progress }),
    });
    options.onStart?.(upload);
    upload.start();
  });
}

async function file(s: { url: string }, id: string) {
  const res = await fetch(`${s.url}/files/${id}`);
  assert.equal(res.status, 200, `GET /files/${id}`);
  return (await res.json()) as {
    name: string;
    size: number;
    sha256: string;
    type: string;
    jobs: { kind: string; state: string; attempts: number }[];
  };
}

/** Resolves when every job of the file finished; fails after `ms`. */
async function processed(s: { url: string }, id: string, ms = 30_000) {
  let jobs: { kind: string; state: string; attempts: number }[] = [];
  await until(
    async () => {
      jobs = (await file(s, id)).jobs;
      return jobs.length > 0 && jobs.every((j) => j.state === 'completed' || j.state === 'dead');
    },
    ms,
    `the jobs of ${id} to finish`,
  );
  return jobs;
}

async function head(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'HEAD', headers: { ...TUS, ...headers } });
  return { status: res.status, offset: Number(res.headers.get('upload-offset')), headers: res.headers };
}

async function create(s: { url: string }, length: number, headers: Record<string, string> = {}) {
  const res = await fetch(`${s.url}/uploads`, {
    method: 'POST',
    headers: { ...TUS, 'upload-length': String(length), ...headers },
  });
  assert.equal(res.status, 201, await res.text());
  return new URL(res.headers.get('location') ?? '', s.url).href;
}

function patch(url: string, body: Buffer, offset: number, headers: Record<string, string> = {}) {
  return fetch(url, {
    method: 'PATCH',
    headers: {
      ...TUS,
      'content-type': 'application/offset+octet-stream',
      'upload-offset': String(offset),
      ...headers,
    },
    body,
  });
}

describe('tus uploads', () => {
  let s: Running;
  before(async () => {
    s = await startService();
  });
  after(async () => {
    await s.stop();
  });

  it('tus-js-client uploads a file through the same pipeline as POST: sniffed, hashed, recorded, processed', async () => {
    const png = await makeImage('png', 120, 80);
    const sent = await tusUpload(png, {
      endpoint: `${s.url}/uploads/`,
      metadata: { filename: '../holiday.png', filetype: 'text/plain' },
    });
    assert.match(sent.fileId, /^[0-9a-f-]{36}$/, 'the final PATCH names the file');
    assert.ok(sent.url.endsWith(`/uploads/${sent.fileId}`), 'the upload id is the file id');
    const f = await file(s, sent.fileId);
    assert.equal(f.name, 'holiday.png', 'the name from the metadata, sanitised');
    assert.equal(f.type, 'image/png', 'the type sniffed, not the client-declared one');
    assert.equal(f.size, png.length);
    assert.equal(f.sha256, sha256(png));
    const jobs = await processed(s, sent.fileId);
    assert.deepEqual(
      jobs.map((j) => [j.kind, j.state]),
      [['image', 'completed']],
    );
    // The tus copy is gone; the upload URL still answers: complete, so a client that retries finishes.
    assert.equal(existsSync(join(s.dataDir, 'uploads', sent.fileId)), false, 'the tus copy is removed');
    const h = await head(sent.url);
    assert.equal(h.status, 200);
    assert.equal(h.offset, png.length);
    assert.equal(h.headers.get('upload-length'), String(png.length));
    assert.equal(h.headers.get('x-weft-file'), `/files/${sent.fileId}`);
  });

  it('an upload cut half-way resumes with tus-js-client where it stopped; the file is whole and processed once', async () => {
    const body = csvOf(6 * 1024 * 1024);
    const port = Number(new URL(s.url).port);
    const proxy = await faultProxy({ target: { host: '127.0.0.1', port } });
    try {
      // Slowed, so the cut lands in the middle of the body rather than after it.
      proxy.set('slow', { delayMs: 10 });
      let uploadUrl = '';
      const cut = tusUpload(body, {
        endpoint: `http://127.0.0.1:${proxy.port}/uploads/`,
        metadata: { filename: 'ledger.csv' },
        onUploadUrlAvailable() {},
        onStart: (u) => {
          u.options.onUploadUrlAvailable = () => {
            uploadUrl = u.url ?? '';
          };
        },
      });
      const failed = assert.rejects(cut, 'the upload fails when its connection is reset');
      await until(() => uploadUrl !== '', 10_000, 'the upload to be created');
      const id = uploadUrl.split('/').pop()!;
      const partial = join(s.dataDir, 'uploads', id);
      await until(
        () => existsSync(partial) && statSync(partial).size >= body.length / 3,
        30_000,
        'a third of the body to reach the tus store',
      );
      proxy.set('reset');
      await failed;
      proxy.set('pass');

      const direct = new URL(new URL(uploadUrl).pathname, s.url).href;
      const h = await head(direct);
      assert.equal(h.status, 200);
      assert.ok(h.offset >= body.length / 3 && h.offset < body.length, `offset ${h.offset} is part-way`);

      const resumed = await tusUpload(body, { endpoint: `${s.url}/uploads/`, uploadUrl: direct });
      assert.equal(resumed.fileId, id, 'the same upload finished');
      assert.ok(resumed.progress[0]! >= h.offset, 'resumed from the offset the server had, not from 0');

      const f = await file(s, id);
      assert.equal(f.size, body.length);
      assert.equal(f.sha256, sha256(body), 'the file is whole');
      assert.equal(f.type, 'text/csv');
      const jobs = await processed(s, id);
      assert.deepEqual(
        jobs.map((j) => [j.kind, j.state, j.attempts]),
        [['csv', 'completed', 1]],
        'processed once',
      );
      const all = (await (await fetch(`${s.url}/files?limit=200`)).json()) as { files: { sha256: string }[] };
      assert.equal(all.files.filter((x) => x.sha256 === f.sha256).length, 1, 'recorded once');
    } finally {
      await proxy.close();
    }
  });

  it('verifies Upload-Checksum before the bytes reach the store: 460 on a mismatch, 400 for an unknown algorithm', async () => {
    const body = Buffer.from('name,age\nann,31\nbob,27\n');
    const url = await create(s, body.length);
    const half = body.subarray(0, 10);
    const sha1 = (b: Buffer) => `sha1 ${createHash('sha1').update(b).digest('base64')}`;

    const bad = await patch(url, half, 0, { 'upload-checksum': sha1(Buffer.from('something else')) });
    assert.equal(bad.status, 460);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'ERR_WEFT_FILES_CHECKSUM');
    assert.equal((await head(url)).offset, 0, 'a mismatched body is not stored');

    const unknown = await patch(url, half, 0, { 'upload-checksum': 'crc32 AAAAAA==' });
    assert.equal(unknown.status, 400);
    assert.equal((await head(url)).offset, 0);

    const good = await patch(url, half, 0, { 'upload-checksum': sha1(half) });
    assert.equal(good.status, 204);
    assert.equal(good.headers.get('upload-offset'), '10');
    const md5 = `md5 ${createHash('md5').update(body.subarray(10)).digest('base64')}`;
    const last = await patch(url, body.subarray(10), 10, { 'upload-checksum': md5 });
    assert.equal(last.status, 204);
    const id = last.headers.get('x-weft-file-id')!;
    assert.equal((await file(s, id)).sha256, sha256(body));

    const options = await fetch(`${s.url}/uploads`, { method: 'OPTIONS' });
    assert.match(options.headers.get('tus-extension') ?? '', /(^|,)checksum(,|$)/);
    assert.match(options.headers.get('tus-checksum-algorithm') ?? '', /sha1/);
  });

  it('terminates an unfinished upload; a finished one is deleted as a file, not through tus', async () => {
    const url = await create(s, 100);
    await patch(url, Buffer.alloc(40, 1), 0);
    const id = url.split('/').pop()!;
    assert.equal(existsSync(join(s.dataDir, 'uploads', id)), true);
    const del = await fetch(url, { method: 'DELETE', headers: TUS });
    assert.equal(del.status, 204);
    assert.equal(existsSync(join(s.dataDir, 'uploads', id)), false, 'its bytes are gone');
    assert.equal((await head(url)).status, 404);

    const done = await tusUpload(Buffer.from('a,b\n1,2\n'), { endpoint: `${s.url}/uploads/` });
    const refused = await fetch(done.url, { method: 'DELETE', headers: TUS });
    assert.equal(refused.status, 400);
    assert.equal((await file(s, done.fileId)).size, 8, 'the file stays');

    const offset = await patch(done.url, Buffer.from('x'), 3);
    assert.equal(offset.status, 409, 'appending to a finished upload is a conflict');
    const notUuid = await head(`${s.url}/uploads/..%2Ffiles.db`);
    assert.equal(notUuid.status, 404);
  });

  it('takes its own webhook URL from the webhook metadata, allowlisted as ?webhook= is', async () => {
    const t = await startService({
      webhookUrl: 'http://127.0.0.1:9/hooks',
      webhookSecret: 'a-secret-of-16-chars+',
      webhookOrigins: 'http://hooks.test:8080',
    });
    try {
      const meta = (url: string) => `filename ${btoa('a.csv')},webhook ${btoa(url)}`;
      const refused = await fetch(`${t.url}/uploads`, {
        method: 'POST',
        headers: { ...TUS, 'upload-length': '8', 'upload-metadata': meta('http://169.254.169.254/latest') },
      });
      assert.equal(refused.status, 400);
      assert.match(await refused.text(), /ERR_WEFT_FILES_WEBHOOK_URL/);
      const url = await create(t, 8, { 'upload-metadata': meta('http://hooks.test:8080/files') });
      const done = await patch(url, Buffer.from('a,b\n1,2\n'), 0);
      const id = done.headers.get('x-weft-file-id')!;
      assert.equal(await t.catalog.webhookOf(id), 'http://hooks.test:8080/files');
    } finally {
      await t.stop();
    }
  });

  it('refuses uploads over the size limit and writes without the token; OPTIONS needs none', async () => {
    const t = await startService({ token: 'tok', maxUpload: 1_000 });
    try {
      const anonymous = await fetch(`${t.url}/uploads`, {
        method: 'POST',
        headers: { ...TUS, 'upload-length': '10' },
      });
      assert.equal(anonymous.status, 401);
      const auth = { authorization: 'Bearer tok' };
      const big = await fetch(`${t.url}/uploads`, {
        method: 'POST',
        headers: { ...TUS, ...auth, 'upload-length': '1001' },
      });
      assert.equal(big.status, 413);
      // Deferred length: the limit holds while the bytes arrive.
      const deferred = await create(t, 0, { ...auth, 'upload-defer-length': '1' }).catch(() => '');
      if (deferred) {
        const over = await patch(deferred, Buffer.alloc(1_001), 0, auth);
        assert.equal(over.status, 413);
      }
      const url = await create(t, 5, auth);
      assert.equal((await head(url)).status, 401, 'HEAD needs the token too');
      assert.equal((await patch(url, Buffer.from('abcde'), 0)).status, 401);
      assert.equal((await fetch(`${t.url}/uploads`, { method: 'OPTIONS' })).status, 204);
      const ok = await tusUpload(Buffer.from('hello'), { endpoint: `${t.url}/uploads/`, headers: auth });
      assert.equal((await file(t, ok.fileId)).size, 5);
    } finally {
      await t.stop();
    }
  });

  it('expires unfinished uploads: a resume after the expiry is answered 410, and the sweep removes their bytes', async () => {
    const t = await startService({ tusExpiry: 1_000 });
    try {
      const url = await create(t, 10);
      assert.equal((await patch(url, Buffer.alloc(4), 0)).status, 204);
      const id = url.split('/').pop()!;
      const path = join(t.dataDir, 'uploads', id);
      const created = Date.now();
      await until(() => Date.now() > created + 1_100, 5_000, 'the expiry to pass');
      const late = await patch(url, Buffer.alloc(6), 4);
      assert.ok(late.status === 410 || late.status === 404, `a late PATCH answers ${late.status}`);
      await until(() => !existsSync(path), 10_000, 'the sweep to remove the expired upload');
    } finally {
      await t.stop();
    }
  });

  it('records a finished upload whose recording failed when the client asks again (HEAD), once', async () => {
    let failNext = true;
    // The first original stored fails, as a full or broken disk would.
    const flaky = (storage: Storage): Storage =>
      new Proxy(storage, {
        get(target, key) {
          const value = Reflect.get(target, key, target);
          if (key !== 'put') return typeof value === 'function' ? value.bind(target) : value;
          return (name: string, body: Readable) => {
            if (failNext && name.startsWith('originals/')) {
              failNext = false;
              body.resume();
              return Promise.reject(Object.assign(new Error('disk I/O error'), { code: 'EIO' }));
            }
            return target.put(name, body);
          };
        },
      });
    const t = await startService({}, { storage: flaky });
    try {
      const body = Buffer.from('city,pop\nLyon,522000\n');
      const url = await create(t, body.length, { 'upload-metadata': `filename ${btoa('cities.csv')}` });
      const last = await patch(url, body, 0);
      assert.ok(last.status >= 500, `the final PATCH fails with the storage (${last.status})`);
      const id = url.split('/').pop()!;
      assert.equal((await fetch(`${t.url}/files/${id}`)).status, 404, 'nothing recorded yet');
      // tus-js-client, retrying, asks HEAD: complete (it would then succeed) only once the file is recorded.
      const h = await head(url);
      assert.equal(h.status, 200);
      assert.equal(h.offset, body.length);
      const f = await file(t, id);
      assert.equal(f.sha256, sha256(body));
      assert.equal(f.name, 'cities.csv');
      assert.equal((await head(url)).status, 200, 'asked again: the same file, not a second one');
      const all = (await (await fetch(`${t.url}/files`)).json()) as { files: unknown[] };
      assert.equal(all.files.length, 1);
    } finally {
      await t.stop();
    }
  });

  it('resumes on another process of the same machine (the processes share the SQLite file and the store)', async () => {
    const config = { ...loadConfig({ FILES_DATA_DIR: s.dataDir }, s.dataDir), port: 0, dataDir: s.dataDir };
    const other = await createService(config, { log: silentLogger });
    await other.app.listen({ port: 0, host: '127.0.0.1' });
    const otherUrl = `http://127.0.0.1:${(other.app.server.address() as { port: number }).port}`;
    try {
      const body = csvOf(200_000);
      const url = await create(s, body.length);
      assert.equal((await patch(url, body.subarray(0, 50_000), 0)).status, 204);
      const id = url.split('/').pop()!;
      const there = `${otherUrl}/uploads/${id}`;
      assert.equal((await head(there)).offset, 50_000, 'the other process sees the offset');
      const last = await patch(there, body.subarray(50_000), 50_000);
      assert.equal(last.status, 204);
      assert.equal((await file(s, id)).sha256, sha256(body));
    } finally {
      await other.app.close();
      await other.close();
    }
  });
});

describe('tus uploads across machines (Redis queue, PostgreSQL, S3 storage)', async () => {
  const skip = await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL });
  it('an upload started on one node resumes on another, in S3', { skip }, async () => {
    const shared = await sharedBackends('tus');
    const a = await startService(shared.urls);
    const b = await startService(shared.urls);
    try {
      const body = csvOf(300_000);
      const url = await create(a, body.length, { 'upload-metadata': `filename ${btoa('big.csv')}` });
      assert.equal((await patch(url, body.subarray(0, 100_000), 0)).status, 204);
      const id = url.split('/').pop()!;
      const onB = `${b.url}/uploads/${id}`;
      assert.equal((await head(onB)).offset, 100_000, 'node B sees what node A stored');
      const resumed = await tusUpload(body, { endpoint: `${b.url}/uploads/`, uploadUrl: onB });
      assert.equal(resumed.fileId, id);
      const f = await file(a, id);
      assert.equal(f.sha256, sha256(body), 'whole, in the shared storage');
      assert.equal(f.name, 'big.csv');
      const jobs = await processed(a, id, 60_000);
      assert.deepEqual(
        jobs.map((j) => [j.kind, j.state]),
        [['csv', 'completed']],
      );
    } finally {
      await a.stop();
      await b.stop();
      await shared.cleanup();
    }
  });
});

describe('the tus-js-client example', () => {
  it('uploads a file (run as docs/files.md shows it), and docs/files.md has it verbatim', async () => {
    const s = await startService();
    const dir = mkdtempSync(join(tmpdir(), 'files-tus-example-'));
    try {
      const path = join(dir, 'people.csv');
      writeFileSync(path, 'name,age\nann,31\nbob,27\n');
      const example = fileURLToPath(new URL('../examples/tus-upload.ts', import.meta.url));
      const { stdout } = await run(process.execPath, [example, path], {
        env: { ...process.env, FILES_URL: s.url },
        timeout: 30_000,
      });
      assert.match(stdout, /^file [0-9a-f-]{36}: text\/csv, 23 bytes$/m);
      const docs = readFileSync(new URL('../../../docs/files.md', import.meta.url), 'utf8');
      assert.ok(docs.includes(readFileSync(example, 'utf8')), 'docs/files.md has the example as it is');
    } finally {
      await s.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('random bytes', () => {
  it('a file of no known type is stored and recorded with no job', async () => {
    const s = await startService();
    try {
      const body = randomBytes(70_000);
      const sent = await tusUpload(body, { endpoint: `${s.url}/uploads/`, chunkSize: 16_384 });
      const f = await file(s, sent.fileId);
      assert.equal(f.sha256, sha256(body));
      assert.deepEqual(f.jobs, []);
    } finally {
      await s.stop();
    }
  });
});
