// FILES_CONCURRENCY=0: an upload-only node takes uploads and serves reads, and runs no job; a process that runs
// jobs, sharing its queue (here the same data directory), processes them.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { silentLogger } from '../src/logger.ts';
import { createService, type Service } from '../src/service.ts';
import { makeImage, type Running, startService, until } from './helpers.ts';

describe('an upload-only node (concurrency 0)', () => {
  let gateway: Running | undefined;
  let processor: Service | undefined;
  after(async () => {
    await processor?.close();
    await gateway?.stop();
  });

  it('is configured with FILES_CONCURRENCY=0, and refuses a negative count', () => {
    assert.equal(loadConfig({ FILES_CONCURRENCY: '0' }, '/').concurrency, 0);
    assert.throws(
      () => loadConfig({ FILES_CONCURRENCY: '-1' }, '/'),
      (err: Error & { code?: string }) =>
        err.code === 'ERR_WEFT_FILES_CONFIG' && /"concurrency"/.test(err.message),
    );
  });

  it('keeps the job queued and starts no thread; a process that runs jobs on the same queue runs it', async () => {
    gateway = await startService({ concurrency: 0, pollMs: 20 });
    const res = await fetch(`${gateway.url}/files?name=a.png`, {
      method: 'POST',
      body: await makeImage('png', 64, 48),
    });
    assert.equal(res.status, 201);
    const up = (await res.json()) as { id: string; jobs: { id: number }[] };
    const job = up.jobs[0]!.id;

    // Given many chances to claim it (it polls every 20 ms and was woken by its own upload), the node did not.
    const state = async () =>
      ((await (await fetch(`${gateway!.url}/jobs/${job}`)).json()) as { state: string }).state;
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(await state(), 'queued');
    }
    assert.equal(gateway.runner.active, 0);
    assert.equal(gateway.pool.stats().threads.total, 0, 'no pool thread was started');

    processor = await createService(
      { ...loadConfig({ FILES_DATA_DIR: gateway.dataDir }, gateway.dataDir), concurrency: 1, pollMs: 20 },
      { log: silentLogger },
    );
    await until(async () => (await state()) === 'completed', 30_000, 'the other process to run the job');
    const file = (await (await fetch(`${gateway.url}/files/${up.id}`)).json()) as {
      derived: { name: string }[];
    };
    assert.deepEqual(file.derived.map((d) => d.name).sort(), ['display.webp', 'thumbnail.webp']);
  });
});
