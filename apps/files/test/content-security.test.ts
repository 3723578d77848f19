// How stored bytes are served: inline only for raster images, plain text and PDF, an attachment otherwise, and every
// content and derived response (200, 206, 304, 416) sandboxed by its CSP and `nosniff`. With a content origin, the
// links handed out point there, and that host serves nothing but content. (The browser test is xss-browser.test.ts.)
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createDashboard } from 'weftjs/dashboard';
import { loadConfig } from '../src/config.ts';
import { CONTENT_SECURITY_POLICY } from '../src/http/send.ts';
import { derivedKey } from '../src/storage/types.ts';
import { makeImage, type Running, startService } from './helpers.ts';

const TOKEN = 'csp-token';
const auth = { authorization: `Bearer ${TOKEN}` };

async function upload(s: Running, body: Buffer | string, name: string) {
  const res = await fetch(`${s.url}/files?name=${encodeURIComponent(name)}`, {
    method: 'POST',
    body,
    headers: auth,
  });
  assert.equal(res.status, 201);
  return (await res.json()) as { id: string; type: string };
}

function assertSandboxed(res: Response, what: string): void {
  assert.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY, what);
  assert.match(CONTENT_SECURITY_POLICY, /^sandbox; default-src 'none'/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff', what);
}

/** GET with a chosen Host header (fetch does not let one be set). */
function getWithHost(url: string, host: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: { host, ...auth }, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end();
  });
}

describe('content is served passively', () => {
  let s: Running;
  before(async () => {
    s = await startService({ token: TOKEN }, { runJobs: false });
  });
  after(() => s.stop());

  it('inline only for raster images, plain text and PDF; everything else is an attachment', async () => {
    const cases: [string, Buffer | string, string, 'inline' | 'attachment'][] = [
      ['a.jpg', await makeImage('jpeg', 16, 16), 'image/jpeg', 'inline'],
      ['a.png', await makeImage('png', 16, 16), 'image/png', 'inline'],
      ['a.gif', await makeImage('gif', 16, 16), 'image/gif', 'inline'],
      ['a.webp', await makeImage('webp', 16, 16), 'image/webp', 'inline'],
      ['notes.txt', 'just some words\n', 'text/plain', 'inline'],
      ['doc.pdf', '%PDF-1.4\n%%EOF\n', 'application/pdf', 'inline'],
      ['feed.xml', '<?xml version="1.0"?><a/>', 'application/xml', 'attachment'],
      ['people.csv', 'name,city\nada,london\nalan,wilmslow\n', 'text/csv', 'attachment'],
      ['blob.bin', Buffer.from([0, 1, 2, 3, 0, 255]), 'application/octet-stream', 'attachment'],
    ];
    for (const [name, body, type, disposition] of cases) {
      const { id, type: stored } = await upload(s, body, name);
      assert.equal(stored, type, name);
      const res = await fetch(`${s.url}/files/${id}/content`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), type, name);
      assert.equal(res.headers.get('content-disposition')?.split(';')[0], disposition, name);
      assert.match(res.headers.get('content-disposition')!, new RegExp(`filename="${name}"`));
      assertSandboxed(res, name);
      await res.arrayBuffer();
    }
  });

  it('the same headers on 206, 304 and 416 answers', async () => {
    const { id } = await upload(s, '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', 'x.svg');
    const part = await fetch(`${s.url}/files/${id}/content`, { headers: { range: 'bytes=0-9' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-disposition')?.split(';')[0], 'attachment');
    assertSandboxed(part, '206');
    await part.arrayBuffer();
    const etag = part.headers.get('etag')!;
    const same = await fetch(`${s.url}/files/${id}/content`, { headers: { 'if-none-match': etag } });
    assert.equal(same.status, 304);
    assertSandboxed(same, '304');
    const outside = await fetch(`${s.url}/files/${id}/content`, { headers: { range: 'bytes=9999-' } });
    assert.equal(outside.status, 416);
    assertSandboxed(outside, '416');
    await outside.arrayBuffer();
  });

  it('derived outputs too', async () => {
    const { id } = await upload(s, await makeImage('png', 16, 16), 'p.png');
    const webp = await makeImage('webp', 8, 8);
    await s.storage.put(derivedKey(id, 'thumbnail.webp'), Readable.from([webp]));
    await s.catalog.setDerived(id, [
      { name: 'thumbnail.webp', type: 'image/webp', size: webp.length, width: 8, height: 8 },
    ]);
    const res = await fetch(`${s.url}/files/${id}/derived/thumbnail.webp`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-disposition'), 'inline');
    assertSandboxed(res, 'derived');
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), webp);
  });
});

describe('a separate content origin (FILES_CONTENT_ORIGIN)', () => {
  let s: Running;
  before(async () => {
    s = await startService({ token: TOKEN, contentOrigin: 'http://content.test:8080' }, { runJobs: false });
  });
  after(() => s.stop());

  it('is validated and reduced to an origin', () => {
    const env = { FILES_DATA_DIR: s.dataDir };
    assert.equal(loadConfig(env, s.dataDir).contentOrigin, undefined);
    const set = (v: string) => loadConfig({ ...env, FILES_CONTENT_ORIGIN: v }, s.dataDir).contentOrigin;
    assert.equal(set('https://Files-Content.example.com/'), 'https://files-content.example.com');
    assert.equal(set('http://127.0.0.1:8081'), 'http://127.0.0.1:8081');
    for (const bad of [
      'files-content.example.com',
      'ftp://x.example',
      'https://x.example/files',
      'https://u:p@x.example',
      'https://x.example/?a',
    ]) {
      assert.throws(
        () => set(bad),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_WEFT_FILES_CONFIG');
          assert.match(err.message, /"contentOrigin".*an origin like/);
          return true;
        },
        bad,
      );
    }
  });

  it('the API hands out content and derived links on it', async () => {
    const { id } = await upload(s, await makeImage('png', 16, 16), 'p.png');
    await s.catalog.setDerived(id, [
      { name: 'thumbnail.webp', type: 'image/webp', size: 1, width: 1, height: 1 },
    ]);
    const meta = (await (await fetch(`${s.url}/files/${id}`)).json()) as {
      content: string;
      derived: { url: string }[];
    };
    assert.equal(meta.content, `http://content.test:8080/files/${id}/content`);
    assert.equal(meta.derived[0]!.url, `http://content.test:8080/files/${id}/derived/thumbnail.webp`);
  });

  it('that host serves content only: no dashboard, no API; the API host is unchanged', async () => {
    const { id } = await upload(s, 'some text\n', 't.txt');
    const host = 'content.test:8080';
    const content = await getWithHost(`${s.url}/files/${id}/content`, host);
    assert.equal(content.status, 200);
    assert.equal(content.body, 'some text\n');
    assert.equal((await getWithHost(`${s.url}/files/${id}/content`, host, 'HEAD')).status, 200);
    for (const [method, path] of [
      ['GET', '/'],
      ['GET', '/files'],
      ['GET', `/files/${id}`],
      ['POST', '/files?name=x'],
      ['DELETE', `/files/${id}`],
      ['GET', '/jobs'],
    ] as const) {
      const res = await getWithHost(`${s.url}${path}`, host, method);
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(
        (JSON.parse(res.body) as { error: { code: string } }).error.code,
        'ERR_WEFT_FILES_NOT_FOUND',
      );
    }
    assert.equal((await getWithHost(`${s.url}/files/${id}`, new URL(s.url).host)).status, 200);
    const page = await fetch(`${s.url}/`);
    assert.equal(page.status, 200, 'the dashboard on the API origin');
    await page.text();
  });

  it('the dashboard shows thumbnails from it: its CSP allows that origin, its snapshot links there', async () => {
    const { id } = await upload(s, await makeImage('png', 16, 16), 'thumb.png');
    await s.catalog.setDerived(id, [
      { name: 'thumbnail.webp', type: 'image/webp', size: 1, width: 1, height: 1 },
    ]);
    const page = await fetch(`${s.url}/`);
    assert.match(
      page.headers.get('content-security-policy') ?? '',
      /img-src 'self' http:\/\/content\.test:8080 blob: data:;/,
    );
    await page.text();
    const snapshot = (await (await fetch(`${s.url}/dashboard/snapshot.json`)).json()) as {
      files: { recent: { id: string; thumbnail?: string }[] };
    };
    const shown = snapshot.files.recent.find((f) => f.id === id);
    assert.equal(shown?.thumbnail, `http://content.test:8080/files/${id}/derived/thumbnail.webp`);
  });

  it('weft/dashboard takes only bare origins in imageOrigins (they go into its CSP)', () => {
    const snapshot = () => ({}) as never;
    for (const bad of [
      ['*'],
      ["https://x.example 'unsafe-inline'"],
      ['https://x.example/path'],
      'https://x.example',
    ]) {
      assert.throws(
        () => createDashboard({ snapshot, imageOrigins: bad as string[] }),
        (err: Error & { code?: string }) =>
          err.code === 'ERR_WEFT_INVALID_OPTION' && /imageOrigins/.test(err.message),
        JSON.stringify(bad),
      );
    }
  });
});
