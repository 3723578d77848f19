// Hostile uploads opened the way an operator would, in a real browser (playwright-core driving Debian's chromium):
// the dashboard open with the token entered (kept in sessionStorage), then a file's content URL opened in that same
// tab. Each file carries a script that, if it ever runs, marks the tab's sessionStorage and uploads a file with the
// stolen token (a synchronous XHR, done before the page's load event). A control first runs that very script on the
// dashboard's origin and sees both happen, so the detector is proven to work; then no hostile file may trigger it.
// Skipped with the reason when there is no browser, unless WEFT_REQUIRE_SERVICES=1 (CI), where that fails.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser, requireBrowser, skipWithoutBrowser } from './browser.ts';
import { makeImage, type Running, startService } from './helpers.ts';

const TOKEN = 'xss-test-token';

// Run in the browser. The project compiles without lib.dom, so the DOM names used are declared here.
declare const sessionStorage: { getItem(key: string): string | null };
declare const document: { images: ArrayLike<{ naturalWidth: number }> };

/** What a hostile file's script does: mark the tab, then upload with the operator's token, synchronously. */
function payload(kind: string): string {
  return [
    `document.title = 'XSS-RAN-${kind}';`,
    `try { sessionStorage.setItem('xss-ran', '${kind}'); } catch (e) {}`,
    `var t = ''; try { t = sessionStorage.getItem('weft-token') || ''; } catch (e) {}`,
    'var x = new XMLHttpRequest();',
    `x.open('POST', '/files?name=pwned-${kind}.txt', false);`,
    `x.setRequestHeader('authorization', 'Bearer ' + t);`,
    `x.send('stolen');`,
  ].join('\n');
}

const html = (kind: string) =>
  `<!doctype html><html><head><title>x</title></head><body><script>${payload(kind)}</script></body></html>`;

/** The hostile files: what they are, their bytes. */
async function hostileFiles(): Promise<{ kind: string; body: Buffer }[]> {
  const gif = await makeImage('gif', 8, 8);
  const png = await makeImage('png', 8, 8);
  return [
    {
      kind: 'xml-xhtml',
      body: Buffer.from(
        `<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head>` +
          `<body><script><![CDATA[${payload('xml-xhtml')}]]></script></body></html>`,
      ),
    },
    {
      kind: 'xml-svg',
      body: Buffer.from(
        `<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">` +
          `<script><![CDATA[${payload('xml-svg')}]]></script></svg>`,
      ),
    },
    {
      kind: 'svg',
      body: Buffer.from(
        `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script><![CDATA[${payload('svg')}]]></script></svg>`,
      ),
    },
    { kind: 'html', body: Buffer.from(html('html')) },
    { kind: 'gif-html', body: Buffer.concat([gif, Buffer.from(html('gif-html'))]) },
    { kind: 'png-html', body: Buffer.concat([png, Buffer.from(html('png-html'))]) },
    { kind: 'pdf-html', body: Buffer.from(`%PDF-1.4\n%\u00e2\u00e3\n${html('pdf-html')}\n%%EOF\n`) },
  ];
}

describe('hostile uploads opened in the operator’s tab', {
  skip: skipWithoutBrowser,
}, () => {
  let s: Running | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const files: { kind: string; id: string; type: string }[] = [];

  before(async () => {
    requireBrowser();
    s = await startService({ token: TOKEN }, { runJobs: false });
    for (const f of await hostileFiles()) {
      const res = await fetch(`${s.url}/files?name=${f.kind}`, {
        method: 'POST',
        body: f.body,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const text = await res.text();
      assert.equal(res.status, 201, text);
      const { id, type } = JSON.parse(text) as { id: string; type: string };
      files.push({ kind: f.kind, id, type });
    }
    browser = await launchBrowser();
    page = await browser.newPage({ acceptDownloads: true });
    await page.goto(`${s.url}/`);
    await page.waitForSelector('#token-form:not([hidden])', { timeout: 20_000 });
    await page.fill('#token', TOKEN);
  });

  after(async () => {
    await browser?.close();
    await s?.stop();
  });

  /** Names of the stored files the payload uploaded (`pwned-…`). */
  async function stolen(): Promise<string[]> {
    const { files: all } = (await (await fetch(`${s!.url}/files?limit=200`)).json()) as {
      files: { name: string }[];
    };
    return all.map((f) => f.name).filter((n) => n.startsWith('pwned-'));
  }

  /** Back on the dashboard with no marker and no stolen upload: each file is judged on its own. */
  async function reset(): Promise<void> {
    const { files: all } = (await (await fetch(`${s!.url}/files?limit=200`)).json()) as {
      files: { id: string; name: string }[];
    };
    for (const f of all.filter((x) => x.name.startsWith('pwned-'))) {
      const res = await fetch(`${s!.url}/files/${f.id}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(res.status, 204);
    }
    await page.goto(`${s!.url}/`);
    await page.evaluate(() => {
      (
        globalThis as unknown as { sessionStorage: { removeItem(k: string): void } }
      ).sessionStorage.removeItem('xss-ran');
    });
  }

  it('control: the payload, run on the dashboard’s origin, is seen (marker and an upload with the token)', async () => {
    await page.evaluate(payload('control'));
    assert.equal(await page.evaluate(() => sessionStorage.getItem('xss-ran')), 'control');
    assert.deepEqual(await stolen(), ['pwned-control.txt']);
    await reset();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('weft-token')), TOKEN);
    assert.deepEqual(await stolen(), []);
  });

  /** Opens every hostile file's content URL in the dashboard's tab; returns what happened and what ran. */
  async function openAll(): Promise<{ outcomes: string[]; ran: string[]; images: string[] }> {
    const outcomes: string[] = [];
    const ran: string[] = [];
    const images: string[] = [];
    for (const f of files) {
      const url = `${s!.url}/files/${f.id}/content`;
      // A file served as an attachment becomes a download (the navigation is aborted); one served inline loads.
      // Either way, a script in it would have run (and its synchronous upload finished) before this resolves.
      const download = page.waitForEvent('download', { timeout: 15_000 }).then(
        (d) => d,
        () => undefined,
      );
      let how: string;
      try {
        const res = await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
        how = `shown inline (${res?.headers()['content-type']})`;
        if (f.type.startsWith('image/')) {
          const width = await page.evaluate(() => document.images[0]?.naturalWidth ?? 0);
          if (width > 0) images.push(f.kind);
        }
      } catch (err) {
        const d = await download;
        assert.ok(d, `opening ${f.kind} neither loaded nor downloaded: ${(err as Error).message}`);
        await d.delete();
        how = 'downloaded';
      }
      outcomes.push(`${f.kind} (${f.type}): ${how}`);
      const title = await page.title();
      await page.goto(`${s!.url}/`);
      const marked = await page.evaluate(() => sessionStorage.getItem('xss-ran'));
      const uploads = await stolen();
      if (/XSS-RAN/.test(title) || marked !== null || uploads.length > 0) {
        ran.push(`${f.kind} ${how}: title ${JSON.stringify(title)}, marker ${marked}, uploads [${uploads}]`);
        await reset();
      }
      assert.equal(await page.evaluate(() => sessionStorage.getItem('weft-token')), TOKEN);
    }
    return { outcomes, ran, images };
  }

  it('no hostile file runs a script when its content URL is opened in that tab', async () => {
    const { outcomes, ran, images } = await openAll();
    process.stderr.write(`xss-browser: ${outcomes.join('; ')}\n`);
    assert.deepEqual(ran, [], "a hostile file ran its script on the service's origin");
    assert.deepEqual(images, ['gif-html', 'png-html'], 'the polyglot images are still shown as images');
  });

  it('nor when the download is ignored and every file rendered inline: the CSP sandbox alone stops them', async () => {
    // As a proxy stripping the header, or a browser ignoring it, would: the service's other headers are kept.
    const policies = new Set<string | undefined>();
    await page.route('**/content', async (route) => {
      const response = await route.fetch();
      const headers = { ...response.headers() };
      policies.add(headers['content-security-policy']);
      delete headers['content-disposition'];
      await route.fulfill({ response, headers });
    });
    try {
      const { outcomes, ran } = await openAll();
      process.stderr.write(`xss-browser, inline: ${outcomes.join('; ')}\n`);
      assert.ok(
        outcomes.some((o) => o.startsWith('xml-xhtml') && o.includes('shown inline')),
        `the XML file was rendered: ${outcomes}`,
      );
      assert.deepEqual(ran, [], "a hostile file ran its script on the service's origin");
      assert.deepEqual([...policies], ["sandbox; default-src 'none'; img-src 'self'"]);
    } finally {
      await page.unroute('**/content');
    }
  });
});
