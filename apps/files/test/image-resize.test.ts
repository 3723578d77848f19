// GET /files/:id/image?w=&h=&fit=&format=: resized on request within limits, made once and kept with the derived
// outputs, identical requests sharing one resize, refused with a typed error when out of bounds, not an image, or
// too many sizes are being made at once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import type { Pool } from 'weftjs/pool';
import { loadConfig } from '../src/config.ts';
import { buildApp } from '../src/http/app.ts';
import { silentLogger } from '../src/logger.ts';
import type { ProcessorTasks } from '../src/processors/index.ts';
import { derivedKey } from '../src/storage/types.ts';
import { makeImage, type Running, startService, until } from './helpers.ts';

async function upload(s: Running, body: Buffer, name: string): Promise<string> {
  const res = await fetch(`${s.url}/files?name=${name}`, { method: 'POST', body });
  assert.equal(res.status, 201);
  return ((await res.json()) as { id: string }).id;
}

async function image(s: Running, id: string, query: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${s.url}/files/${id}/image?${query}`, { headers });
  const body = Buffer.from(await res.arrayBuffer());
  return { res, body };
}

const code = (body: Buffer) => (JSON.parse(body.toString()) as { error: { code: string } }).error.code;

describe('images resized on request', () => {
  let s: Running;
  let photo: string;
  before(async () => {
    s = await startService({ concurrency: 0 }); // no job runs: the resize does not wait for, or race with, one
    // 640×480 stored, EXIF orientation 6: shown as 480×640.
    photo = await upload(s, await makeImage('jpeg', 640, 480, 6), 'p.jpg');
  });
  after(async () => {
    await s.stop();
  });

  it('makes a size once, auto-rotated, and serves it again from storage with its validator', async () => {
    const runs = () => s.pool.stats().completed;
    const before = runs();
    const first = await image(s, photo, 'w=120');
    assert.equal(first.res.status, 200);
    assert.equal(first.res.headers.get('content-type'), 'image/webp');
    const meta = await sharp(first.body).metadata();
    assert.equal(meta.format, 'webp');
    assert.deepEqual([meta.width, meta.height], [120, 160], 'rotated by its EXIF orientation, then fitted');
    assert.equal(runs(), before + 1);
    assert.ok(await s.storage.stat(derivedKey(photo, 'sized/120x-inside.webp')), 'kept in storage');

    const again = await image(s, photo, 'w=120');
    assert.equal(again.res.status, 200);
    assert.deepEqual(again.body, first.body);
    assert.equal(runs(), before + 1, 'not made twice');
    const etag = first.res.headers.get('etag')!;
    assert.equal((await image(s, photo, 'w=120', { 'if-none-match': etag })).res.status, 304);
    assert.match(first.res.headers.get('cache-control') ?? '', /immutable/);
    assert.match(
      first.res.headers.get('content-security-policy') ?? '',
      /sandbox/,
      'sandboxed like all content',
    );
    assert.equal(first.res.headers.get('x-content-type-options'), 'nosniff');
  });

  it('crops with fit=cover, converts the format, and never enlarges', async () => {
    const cover = await image(s, photo, 'w=50&h=50&fit=cover&format=png');
    assert.equal(cover.res.headers.get('content-type'), 'image/png');
    const m = await sharp(cover.body).metadata();
    assert.deepEqual([m.format, m.width, m.height], ['png', 50, 50]);
    const big = await sharp((await image(s, photo, 'h=2000&format=jpeg')).body).metadata();
    assert.deepEqual([big.format, big.width, big.height], ['jpeg', 480, 640], 'no larger than the original');
  });

  it('shares one resize among identical requests made at the same time', async () => {
    const before = s.pool.stats().completed;
    const answers = await Promise.all(Array.from({ length: 5 }, () => image(s, photo, 'w=77&format=avif')));
    for (const a of answers) assert.equal(a.res.status, 200);
    assert.equal(s.pool.stats().completed, before + 1);
  });

  it('refuses bounds outside 1..2560, a missing size, bad options, other types and unknown files', async () => {
    for (const q of ['w=0', 'w=2561', 'h=-3', 'w=abc', '', 'fit=cover', 'w=10&fit=fill', 'w=10&format=gif']) {
      const r = await image(s, photo, q);
      assert.equal(r.res.status, 400, `?${q}`);
      assert.equal(code(r.body), 'ERR_WEFT_FILES_BAD_REQUEST');
    }
    const csv = await upload(s, Buffer.from('a,b\n1,2\n3,4\n'), 'x.csv');
    const notImage = await image(s, csv, 'w=10');
    assert.equal(notImage.res.status, 415);
    assert.equal(code(notImage.body), 'ERR_WEFT_FILES_UNSUPPORTED');
    const missing = await image(s, '00000000-0000-0000-0000-000000000000', 'w=10');
    assert.equal(missing.res.status, 404);
  });

  it('answers 422 for an image that cannot be decoded', async () => {
    const broken = await upload(s, (await makeImage('jpeg', 320, 240)).subarray(0, 300), 'broken.jpg');
    const r = await image(s, broken, 'w=10');
    assert.equal(r.res.status, 422);
    assert.equal(code(r.body), 'ERR_WEFT_FILES_BAD_IMAGE');
  });

  it('deletes the sizes made with the file', async () => {
    const id = await upload(s, await makeImage('png', 64, 64), 'small.png');
    assert.equal((await image(s, id, 'w=16')).res.status, 200);
    assert.ok(await s.storage.stat(derivedKey(id, 'sized/16x-inside.webp')));
    assert.equal((await fetch(`${s.url}/files/${id}`, { method: 'DELETE' })).status, 204);
    assert.equal(await s.storage.stat(derivedKey(id, 'sized/16x-inside.webp')), undefined);
  });

  it('answers 503 with Retry-After when too many sizes are being made, without queueing more', async () => {
    const release = Promise.withResolvers<void>();
    let started = 0;
    // A pool whose resizes wait until the test lets them go: the first size is in the making.
    const held = {
      run: async (...args: Parameters<Pool<ProcessorTasks>['run']>) => {
        started++;
        await release.promise;
        return s.pool.run(...args);
      },
    } as unknown as Pool<ProcessorTasks>;
    const config = loadConfig({}, s.dataDir);
    const app = await buildApp({
      config,
      catalog: s.catalog,
      queue: s.queue,
      storage: s.storage,
      bus: s.bus,
      log: silentLogger,
      resize: {
        pool: held,
        maxPending: 1,
        limitInputPixels: config.limitInputPixels,
        timeoutMs: config.jobTimeoutMs,
      },
    });
    try {
      const first = app.inject({ url: `/files/${photo}/image?w=31` });
      await until(() => started > 0, 10_000, 'the first resize to start');
      const second = await app.inject({ url: `/files/${photo}/image?w=32` });
      assert.equal(second.statusCode, 503);
      assert.equal(second.headers['retry-after'], '1');
      assert.equal(second.json().error.code, 'ERR_WEFT_FILES_OVERLOADED');
      assert.equal(started, 1, 'the refused size was not queued');
      release.resolve();
      assert.equal((await first).statusCode, 200);
      assert.equal((await app.inject({ url: `/files/${photo}/image?w=32` })).statusCode, 200, 'free again');
    } finally {
      release.resolve();
      await app.close();
    }
  });
});
