// A browser uploads with tus-js-client (its published browser bundle) from a page of another origin, as an app with
// Uppy would: CORS lets it create, append, resume and read the file id; one PATCH is cut by a connection reset in
// the middle of the upload, the client resumes where the server stopped, and the file is whole and processed once.
// Skipped with the reason when there is no browser, unless WEFT_REQUIRE_SERVICES=1 (CI), where that fails.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser, requireBrowser, skipWithoutBrowser } from './browser.ts';
import { type Running, startService, until } from './helpers.ts';

const TOKEN = 'tus-browser-token';
const tusBundle = readFileSync(
  createRequire(import.meta.url).resolve('tus-js-client/dist/tus.min.js'),
  'utf8',
);

// Run in the browser. The project compiles without lib.dom, so the names used there are declared here.
declare const tus: {
  Upload: new (file: unknown, options: Record<string, unknown>) => { start(): void; url: string | null };
};
declare const Blob: new (parts: unknown[]) => unknown;

describe('tus from a browser (tus-js-client, another origin)', { skip: skipWithoutBrowser }, () => {
  let s: Running;
  let page: Server;
  let pageUrl = '';
  let browser: Browser;
  before(async () => {
    requireBrowser();
    s = await startService({ token: TOKEN });
    page = createServer((req, res) => {
      if (req.url === '/tus.min.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(tusBundle);
      else
        res
          .writeHead(200, { 'content-type': 'text/html' })
          .end('<!doctype html><script src="/tus.min.js"></script>');
    });
    await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
    pageUrl = `http://127.0.0.1:${(page.address() as { port: number }).port}/`;
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await new Promise((resolve) => page?.close(resolve));
    await s?.stop();
  });

  it('resumes after a connection reset in the middle; the file is whole and processed once', async () => {
    const context = await browser.newContext();
    const tab = await context.newPage();
    try {
      await tab.goto(pageUrl);
      // The third PATCH is cut with a connection reset, once.
      let patches = 0;
      let cut = false;
      await tab.route(`${s.url}/uploads/**`, async (route) => {
        if (route.request().method() === 'PATCH' && ++patches === 3 && !cut) {
          cut = true;
          await route.abort('connectionreset');
        } else await route.continue();
      });
      const size = 3 * 1024 * 1024 + 123;
      const result = await tab.evaluate(
        ({ endpoint, token, size }) =>
          new Promise<{ fileId: string; sha256: string; errors: number; offsetAfter: number }>(
            (resolve, reject) => {
              const bytes = new Uint8Array(size);
              for (let i = 0; i < size; i++) bytes[i] = (i * 2654435761) >>> 24;
              let errors = 0;
              const upload = new tus.Upload(new Blob([bytes]), {
                endpoint,
                headers: { authorization: `Bearer ${token}` },
                metadata: { filename: 'from-browser.bin' },
                chunkSize: 512 * 1024,
                retryDelays: [0, 100, 300],
                onShouldRetry: () => {
                  errors++;
                  return true;
                },
                onError: (err: Error) => reject(err.message),
                onSuccess: async ({ lastResponse }: { lastResponse: { getHeader(n: string): string } }) => {
                  const digest = await crypto.subtle.digest('SHA-256', bytes);
                  const hex = [...new Uint8Array(digest)]
                    .map((b) => b.toString(16).padStart(2, '0'))
                    .join('');
                  // Asked again once finished (as after a lost answer), the upload answers complete, readable here.
                  const again = await fetch(upload.url ?? '', {
                    method: 'HEAD',
                    headers: { 'Tus-Resumable': '1.0.0', authorization: `Bearer ${token}` },
                  });
                  resolve({
                    fileId: lastResponse.getHeader('X-Weft-File-Id'),
                    sha256: hex,
                    errors,
                    offsetAfter: Number(again.headers.get('Upload-Offset')),
                  });
                },
              });
              upload.start();
            },
          ),
        { endpoint: `${s.url}/uploads/`, token: TOKEN, size },
      );
      assert.equal(cut, true, 'a PATCH was cut');
      assert.ok(result.errors >= 1, 'the client saw the failure and retried');
      assert.match(result.fileId, /^[0-9a-f-]{36}$/, 'CORS exposes the file id');
      const file = (await (await fetch(`${s.url}/files/${result.fileId}`)).json()) as {
        name: string;
        size: number;
        sha256: string;
      };
      assert.equal(file.name, 'from-browser.bin');
      assert.equal(result.offsetAfter, size, 'a finished upload answers complete, across origins');
      assert.equal(file.size, size);
      assert.equal(file.sha256, result.sha256, 'whole: the hash the browser computed');
      const expected = Buffer.alloc(size);
      for (let i = 0; i < size; i++) expected[i] = (i * 2654435761) >>> 24;
      assert.equal(file.sha256, createHash('sha256').update(expected).digest('hex'));
      await until(
        async () =>
          ((await (await fetch(`${s.url}/files`)).json()) as { files: unknown[] }).files.length === 1,
        5_000,
        'exactly one file recorded',
      );
    } finally {
      await context.close();
    }
  });
});
