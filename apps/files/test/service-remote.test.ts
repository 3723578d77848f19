// The service in-process on the remote backends (QUEUE_URL on Redis, DATABASE_URL on PostgreSQL, STORAGE_URL on
// s3rver): two instances are two machines. What one records, the other serves; events cross between them; the
// queue depth feeds load shedding; a backend that does not answer stops the start with its own code.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DashboardSnapshot } from 'weftjs/dashboard';
import { openStream } from '../../../test/dashboard/helpers.ts';
import { loadConfig } from '../src/config.ts';
import type { FilesEvent } from '../src/events/types.ts';
import { silentLogger } from '../src/logger.ts';
import { BullQueue } from '../src/queue/bullmq.ts';
import { createService } from '../src/service.ts';
import { launchBrowser, requireBrowser, skipWithoutBrowser } from './browser.ts';
import { makeImage, type Running, startService, waitFor } from './helpers.ts';
import { DATABASE_URL, REDIS_URL, type SharedBackends, serviceSkip, sharedBackends } from './services.ts';

/** The page's DOM, as far as the browser check reads it (the test runs without the DOM's types). */
declare const document: {
  querySelector(selector: string): { getAttribute(name: string): string | null } | null;
  getElementById(id: string): { hidden: boolean } | null;
};

const skip = await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL });

describe('two services on Redis, PostgreSQL and S3', { skip }, () => {
  let shared: SharedBackends;
  let a: Running;
  let b: Running;

  before(async () => {
    shared = await sharedBackends('remote');
    // Two nodes in one process: named, since the default name is the host and the pid.
    a = await startService({ ...shared.urls, nodeName: 'node-a' });
    b = await startService({ ...shared.urls, nodeName: 'node-b' });
  });

  after(async () => {
    await a?.stop();
    await b?.stop();
    await shared?.cleanup();
  });

  it('uses no SQLite file when the queue and the catalog are remote', () => {
    assert.equal(a.db, undefined);
    assert.equal(a.catalog.csvDatabase, shared.urls.databaseUrl);
  });

  it('an upload to one node: the other sees its events, serves its record, content and outputs', async () => {
    const seenOnB: FilesEvent[] = [];
    const off = b.bus.on('*', (e) => seenOnB.push(e));
    await off.ready;
    const jpeg = await makeImage('jpeg', 800, 600);
    const res = await fetch(`${a.url}/files?name=cross.jpg`, { method: 'POST', body: jpeg });
    assert.equal(res.status, 201);
    const up = (await res.json()) as { id: string; jobs: { id: number }[] };
    const done = await waitFor(
      b.events,
      (e): e is Extract<FilesEvent, { type: 'job.completed' }> =>
        e.type === 'job.completed' && e.data.jobId === up.jobs[0]!.id,
      30_000,
      'the image job to complete, seen from B',
    );
    assert.equal(done.data.fileId, up.id);
    off();
    assert.ok(
      seenOnB.some((e) => e.type === 'file.uploaded' && e.data.fileId === up.id),
      "B's listener got A's file.uploaded",
    );
    const meta = (await (await fetch(`${b.url}/files/${up.id}`)).json()) as {
      name: string;
      jobs: { state: string }[];
      derived: { name: string }[];
    };
    assert.equal(meta.name, 'cross.jpg');
    assert.deepEqual(
      meta.jobs.map((j) => j.state),
      ['completed'],
    );
    assert.deepEqual(meta.derived.map((d) => d.name).sort(), ['display.webp', 'thumbnail.webp']);
    const content = Buffer.from(await (await fetch(`${b.url}/files/${up.id}/content`)).arrayBuffer());
    assert.ok(content.equals(jpeg), 'B serves the bytes A stored');
    const thumb = await fetch(`${b.url}/files/${up.id}/derived/thumbnail.webp`);
    assert.equal(thumb.status, 200);
    await thumb.arrayBuffer();

    // Deleted on B: gone for A too, with its jobs.
    assert.equal((await fetch(`${b.url}/files/${up.id}`, { method: 'DELETE' })).status, 204);
    assert.equal((await fetch(`${a.url}/files/${up.id}`)).status, 404);
    assert.deepEqual(await a.queue.list({ fileId: up.id }), []);
  });

  it('loads a CSV into PostgreSQL, once, whichever node runs it', async () => {
    const body = 'city,people\nLyon,522000\nNantes,320000\n';
    const res = await fetch(`${b.url}/files?name=cities.csv`, { method: 'POST', body });
    assert.equal(res.status, 201);
    const up = (await res.json()) as { id: string; jobs: { id: number }[] };
    const done = await waitFor(
      a.events,
      (e): e is Extract<FilesEvent, { type: 'job.completed' | 'job.failed' }> =>
        (e.type === 'job.completed' || e.type === 'job.failed') && e.data.jobId === up.jobs[0]!.id,
      30_000,
      'the CSV job',
    );
    assert.equal(done.type, 'job.completed');
    const table = `csv_${up.id.replaceAll('-', '')}`;
    const { rows } = await shared.admin.query(
      `SELECT city, people FROM ${shared.schema}.${table} ORDER BY _line`,
    );
    assert.deepEqual(rows, [
      { city: 'Lyon', people: '522000' },
      { city: 'Nantes', people: '320000' },
    ]);
    assert.equal((await fetch(`${a.url}/files/${up.id}`, { method: 'DELETE' })).status, 204);
    const gone = await shared.admin.query('SELECT to_regclass($1) AS t', [`${shared.schema}.${table}`]);
    assert.equal(gone.rows[0].t, null, 'the CSV table went with the file');
  });

  it("each node's dashboard shows the other node's processes (the node registry), in the page too", async () => {
    const stream = await openStream(`${a.url}/dashboard/events`);
    try {
      const deadline = Date.now() + 20_000;
      let snapshot: DashboardSnapshot | undefined;
      for (let n = 1; !snapshot?.nodes?.length; n++) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error("timed out after 20 s waiting for node-b on node-a's dashboard");
        const events = await stream.received(n, left, `snapshot ${n} of node-a's dashboard`);
        snapshot = JSON.parse(events.at(-1)!.data) as DashboardSnapshot;
      }
      assert.equal(snapshot.node, 'node-a');
      assert.deepEqual(
        snapshot.nodes!.map((n) => [n.name, n.state, n.scope]),
        [['node-b', 'up', 'process']],
      );
      assert.equal(snapshot.nodes![0]!.slots[0]!.pid, process.pid);
      assert.ok((snapshot.nodes![0]!.slots[0]!.rss ?? 0) > 0, "node-b's numbers came with it");
    } finally {
      stream.close();
    }
    if (skipWithoutBrowser) return;
    requireBrowser();
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`${b.url}/`);
      await page.waitForFunction(
        () => {
          const row = document.querySelector('#node-slots tr[data-node="node-a"]');
          return (
            row?.getAttribute('data-state') === 'ready' && !document.getElementById('other-nodes')?.hidden
          );
        },
        undefined,
        { timeout: 20_000 },
      );
      const cells = await page.$$eval('#node-slots tr[data-node="node-a"] td', (tds) =>
        tds.map((td) => td.textContent),
      );
      assert.equal(cells[0], 'node-a');
      assert.equal(cells[2], String(process.pid));
      assert.match((await page.textContent('#summary')) ?? '', /node node-b, 1 other node/);
    } finally {
      await browser.close();
    }
  });

  it("feeds the shared queue's depth to load shedding", async () => {
    // A third node that runs no jobs sees what waits in the shared queue, within its 1 s refresh.
    const c = await startService(shared.urls, { runJobs: false });
    const paused = await BullQueue.open({ url: shared.urls.queueUrl, leaseMs: 1_000, retryDelayMs: 100 });
    try {
      // Jobs of files that do not exist: what matters is that they wait. They are removed before A or B runs them.
      await a.runner.close();
      await b.runner.close();
      await paused.add('nofile-1', ['image'], 1);
      await paused.add('nofile-2', ['csv'], 1);
      const deadline = Date.now() + 5_000;
      while (c.queued() < 2) {
        if (Date.now() > deadline) throw new Error(`queued() stayed at ${c.queued()}, expected 2`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(c.queued(), 2);
    } finally {
      await paused.removeForFile('nofile-1');
      await paused.removeForFile('nofile-2');
      await paused.close();
      await c.stop();
    }
  });
});

describe('a remote backend that does not answer', () => {
  const base = () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'files-remote-down-'));
    return { ...loadConfig({ FILES_DATA_DIR: dataDir }, dataDir), dataDir };
  };

  it('stops the start with ERR_WEFT_FILES_REDIS, without the password', async () => {
    const config = { ...base(), queueUrl: 'redis://app:hunter2@127.0.0.1:1' };
    try {
      await assert.rejects(createService(config, { log: silentLogger }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_WEFT_FILES_REDIS');
        assert.doesNotMatch(err.message, /hunter2/);
        return true;
      });
    } finally {
      rmSync(config.dataDir, { recursive: true, force: true });
    }
  });

  it('stops the start with ERR_WEFT_FILES_DATABASE, without the password', async () => {
    const config = { ...base(), databaseUrl: 'postgres://app:hunter2@127.0.0.1:1/files' };
    try {
      await assert.rejects(createService(config, { log: silentLogger }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_WEFT_FILES_DATABASE');
        assert.doesNotMatch(err.message, /hunter2/);
        return true;
      });
    } finally {
      rmSync(config.dataDir, { recursive: true, force: true });
    }
  });
});
