// The live dashboard in a real browser (playwright-core driving Debian's chromium) against the service as users run
// it: `weft start --workers 2 --metrics-port 0 --dashboard`. Upload by drag-and-drop and see the thumbnail and the
// counters change, kill a worker and see its slot restart, retry a dead-lettered job, stop with the page open.
// Skipped with the reason when there is no browser, unless WEFT_REQUIRE_SERVICES=1 (CI), where that fails.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser, requireBrowser, skipWithoutBrowser } from './browser.ts';
import { freePort, makeImage } from './helpers.ts';

const root = new URL('../../../', import.meta.url).pathname;
const cli = join(root, 'src/cli/weft.ts');
const server = join(root, 'apps/files/src/server.ts');
const artifacts = join(root, 'test-artifacts');
const TOKEN = 'dashboard-test-token';

// The functions given to page.evaluate and page.waitForFunction run in the browser. The project compiles without
// lib.dom (it would retype Node's timers), so the few DOM names they use are declared here, for this module only.
interface DomElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
  complete?: boolean;
  naturalWidth?: number;
  dispatchEvent(event: unknown): boolean;
  getAttribute(name: string): string | null;
}
declare const document: {
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement> & Iterable<DomElement>;
  getElementById(id: string): DomElement | null;
};
declare const DataTransfer: new () => { items: { add(file: File): void } };
declare const DragEvent: new (type: string, init: object) => unknown;

const base = mkdtempSync(join(tmpdir(), 'files-dashboard-'));
let child: ChildProcess | undefined;
let browser: Browser | undefined;
after(async () => {
  await browser?.close();
  if (child?.exitCode === null && child.pid) process.kill(-child.pid, 'SIGKILL');
  rmSync(base, { recursive: true, force: true });
});

/** Fails naming `what` (and what the page says about its connection) when `fn` is not true within `ms`. */
async function until<A>(
  page: Page,
  fn: Parameters<typeof page.waitForFunction<unknown, A>>[0],
  arg: A,
  ms: number,
  what: string,
): Promise<void> {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
  } catch {
    const said = await page.textContent('#connection').catch(() => '?');
    throw new Error(`timed out after ${ms} ms waiting for ${what} (the page says: ${said})`);
  }
}

/** Runs a step; on failure saves a screenshot of `page` to test-artifacts/ and names it in the error. */
async function step(page: () => Page | undefined, name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const p = page();
    if (p) {
      mkdirSync(artifacts, { recursive: true });
      const path = join(artifacts, `dashboard-${name}-${Date.now()}.png`);
      await p.screenshot({ path, fullPage: true }).catch(() => {});
      process.stderr.write(`dashboard test: screenshot of the failure saved to ${path}\n`);
      (err as Error).message += `\nscreenshot: ${path}`;
    }
    throw err;
  }
}

describe('the dashboard in a browser', { skip: skipWithoutBrowser }, () => {
  let url = '';
  let supervisorUrl = '';
  let name = '';
  let env: NodeJS.ProcessEnv = {};
  let page: Page | undefined;
  let out = '';
  let exit: Promise<number | null> = Promise.resolve(null);
  const current = () => page;

  before(async () => {
    requireBrowser();
    const port = await freePort();
    name = `files-dashboard-${process.pid}`;
    env = {
      ...process.env,
      PORT: String(port),
      FILES_DATA_DIR: join(base, 'data'),
      FILES_LOG_LEVEL: 'warn',
      FILES_TOKEN: TOKEN,
      // The page is under test here, not shedding: a loaded 2-core CI machine can delay a loop past 500 ms.
      FILES_MAX_EVENT_LOOP_DELAY: '10s',
      WEFT_RUNTIME_DIR: join(base, 'run'),
    };
    const args = ['--conditions=weft-source', cli, 'start', server, '--workers', '2', '--name', name];
    child = spawn(
      process.execPath,
      [...args, '--metrics-port', '0', '--dashboard', '--kill-timeout', '20s'],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      },
    );
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr!.on('data', (d: Buffer) => {
      out += d;
    });
    const c = child;
    exit = new Promise((resolve) => c.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while ((out.match(/"worker \d ready"/g) ?? []).length < 2) {
      if (c.exitCode !== null) throw new Error(`weft start exited with ${c.exitCode}:\n${out}`);
      if (Date.now() > deadline) throw new Error(`the cluster did not start within 60 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    url = `http://127.0.0.1:${port}/`;
    supervisorUrl = /"dashboard":"(http:[^"]+)"/.exec(out)?.[1] ?? '';
    assert.ok(supervisorUrl, `the supervisor logs its dashboard URL:\n${out}`);
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(url);
  });

  it('shows every worker slot, live', () =>
    step(current, 'slots', async () => {
      const p = page!;
      await until(
        p,
        () => document.getElementById('connection')?.dataset.state === 'live',
        0,
        20_000,
        'Live',
      );
      await until(
        p,
        () => document.querySelectorAll('#slots tr[data-state="ready"][data-pid]').length === 2,
        0,
        20_000,
        'two ready slots with their pid',
      );
      assert.match((await p.textContent('#summary')) ?? '', /2 of 2 workers ready/);
      assert.equal(await p.isVisible('#token-form'), true, 'the service has a token: the page asks for it');
    }));

  it('uploads a dropped image: progress, then its thumbnail and the job counters change', () =>
    step(current, 'upload', async () => {
      const p = page!;
      await p.fill('#token', TOKEN);
      const count = async (state: string) =>
        Number(await p.textContent(`#job-counts li[data-state="${state}"] .count`));
      await until(
        p,
        () => document.querySelector('#job-counts li[data-state="completed"]'),
        0,
        10_000,
        'counters',
      );
      const completed = await count('completed');
      const jpeg = (await makeImage('jpeg', 640, 480)).toString('base64');
      await p.evaluate((b64) => {
        const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'dropped.jpg', { type: 'image/jpeg' }));
        const zone = document.getElementById('drop')!;
        for (const type of ['dragenter', 'dragover', 'drop'])
          zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
      }, jpeg);
      await until(
        p,
        () => document.querySelector('#uploads li[data-status]'),
        0,
        20_000,
        'the upload to finish',
      );
      assert.equal(
        await p.getAttribute('#uploads li', 'data-status'),
        '201',
        String(await p.textContent('#uploads li')),
      );
      assert.equal(await p.getAttribute('#uploads li progress', 'value'), '100');
      const id = (await p.getAttribute('#uploads li', 'data-file'))!;
      await until(
        p,
        (file) => {
          const img = document.querySelector(`#recent tr[data-file="${file}"] img`);
          return img?.complete && (img.naturalWidth ?? 0) > 0;
        },
        id,
        30_000,
        'the thumbnail of the dropped image to load',
      );
      // The outputs are recorded (and the thumbnail shown) a moment before the job's completion: its state follows.
      await until(
        p,
        (file) =>
          document.querySelector(`#recent tr[data-file="${file}"]`)?.getAttribute('data-state') ===
          'completed',
        id,
        10_000,
        "the dropped image's job to show completed",
      );
      await until(
        p,
        (before) =>
          Number(document.querySelector('#job-counts li[data-state="completed"] .count')?.textContent) >
          before,
        completed,
        10_000,
        'the completed counter to go up',
      );
      assert.match((await p.textContent('#events')) ?? '', /uploaded dropped\.jpg/);
    }));

  it('a killed worker: its slot shows a new pid, ready again, one restart', () =>
    step(current, 'restart', async () => {
      const p = page!;
      const pid = Number(await p.getAttribute('#slots tr[data-slot="0"]', 'data-pid'));
      assert.ok(pid > 0);
      process.kill(pid, 'SIGKILL');
      await until(
        p,
        (old) => {
          const row = document.querySelector('#slots tr[data-slot="0"]');
          return row?.dataset.pid && row.dataset.pid !== String(old) && row.dataset.state === 'ready';
        },
        pid,
        45_000,
        `slot 0 to show a new worker in place of pid ${pid}`,
      );
      const cells = await p.$$eval('#slots tr[data-slot="0"] td', (tds) => tds.map((td) => td.textContent));
      assert.equal(cells[4], '1', 'one restart');
      assert.equal(cells[9], 'signal SIGKILL', 'how the last one ended');
    }));

  it('retries a dead-lettered job from the page (with the token; refused without it)', () =>
    step(current, 'retry', async () => {
      const p = page!;
      const jpeg = await makeImage('jpeg', 320, 240);
      await p.setInputFiles('#file-input', {
        name: 'broken.jpg',
        mimeType: 'image/jpeg',
        buffer: jpeg.subarray(0, 200),
      });
      const row = '#failures tr[data-job]';
      await until(
        p,
        () =>
          [...document.querySelectorAll('#failures tr')].some((tr) => tr.textContent?.includes('broken.jpg')),
        0,
        30_000,
        'the corrupt image to be dead-lettered',
      );
      const job = (await p.getAttribute(row, 'data-job'))!;
      const at = Number(await p.getAttribute(row, 'data-at'));
      assert.match((await p.textContent(`${row} .error`)) ?? '', /ERR_WEFT_FILES_BAD_IMAGE/);

      await p.fill('#token', '');
      await p.click(`${row} button`);
      await until(
        p,
        () => /\(401\)/.test(document.getElementById('jobs-status')?.textContent ?? ''),
        0,
        10_000,
        '401',
      );

      await p.fill('#token', TOKEN);
      const clicked = Date.now();
      await p.click(`#failures tr[data-job="${job}"] button`);
      await until(
        p,
        (j) => document.getElementById('jobs-status')?.textContent === `Job ${j} is queued again.`,
        job,
        10_000,
        'the retry to be accepted',
      );
      // A corrupt image fails again at once: the job is back in the dead letters with a later failure.
      await until(
        p,
        ([j, t]) => Number(document.querySelector(`#failures tr[data-job="${j}"]`)?.dataset.at) > t,
        [job, at] as const,
        30_000,
        `job ${job} to be retried and fail again`,
      );
      const api = (await (await fetch(`${url}jobs/${job}`)).json()) as { state: string; updatedAt: number };
      assert.equal(api.state, 'dead');
      assert.ok(api.updatedAt >= clicked, 'the job ran again after the click');
      if (process.env.WEFT_DASHBOARD_SCREENSHOT === '1') {
        await p.screenshot({ path: join(root, 'docs/dashboard.png'), fullPage: true });
      }
    }));

  it('the supervisor serves the same page on its metrics port, without the application panels', () =>
    step(current, 'supervisor', async () => {
      const p = await browser!.newPage();
      try {
        await p.goto(supervisorUrl);
        await until(
          p,
          () => document.querySelectorAll('#slots tr[data-state="ready"]').length === 2,
          0,
          20_000,
          'two ready slots on the supervisor’s page',
        );
        assert.equal(await p.isHidden('#jobs'), true);
        assert.equal(await p.isHidden('#files'), true);
      } finally {
        await p.close();
      }
    }));

  it('weft stop with the page open: every worker drains at once, none waits on its event stream', () =>
    step(current, 'stop', async () => {
      const started = Date.now();
      const code = await new Promise<number>((resolve) =>
        execFile(
          process.execPath,
          ['--conditions=weft-source', cli, 'stop', '--name', name],
          { env, timeout: 30_000 },
          (err) => resolve(err ? ((err as { code?: number }).code ?? 1) : 0),
        ),
      );
      assert.equal(code, 0, out);
      assert.equal(await exit, 0, 'every worker exited cleanly (none was killed at the 20 s kill timeout)');
      assert.ok(Date.now() - started < 15_000, `stopped in ${Date.now() - started} ms`);
    }));
});
