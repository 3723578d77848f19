// Deleting a file while its job runs leaves nothing behind: the job's outputs (derived files, their rows, a CSV
// table) made after the delete are removed by the job itself, and its job row is gone. The job is held at a known
// point by a gate in the storage adapter, so the delete lands mid-job deterministically.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { csvTableFor } from '../src/catalog/types.ts';
import type { Storage } from '../src/storage/types.ts';
import { filesUnder, makeImage, type Running, startService } from './helpers.ts';

/** Resolves with `promise`, or fails naming `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A gate a job waits at: `reached` resolves when the job is there, `open()` lets it on. */
function gate() {
  let arrive!: () => void;
  let open!: () => void;
  const reached = new Promise<void>((r) => {
    arrive = r;
  });
  const opened = new Promise<void>((r) => {
    open = r;
  });
  const pass = async () => {
    arrive();
    await opened;
  };
  return { reached, open, pass };
}

describe('delete while a job runs', () => {
  let s: Running;
  const gates = { image: gate(), csv: gate() };
  before(async () => {
    const wrap = (st: Storage): Storage => ({
      put: (k, src, o) => st.put(k, src, o),
      // Images: held after processing, before the outputs are stored.
      putFile: async (k, p) => {
        await gates.image.pass();
        return st.putFile(k, p);
      },
      read: (k, r) => st.read(k, r),
      stat: (k) => st.stat(k),
      delete: (k, o) => st.delete(k, o),
      // CSV: the job gets its own copy of the original (so deleting the original does not stop it), held before
      // it is loaded: the table is made after the delete dropped it.
      localPath: async (k) => {
        const local = await st.localPath(k);
        if (!k.startsWith('originals/')) return local;
        const dir = await mkdtemp(join(tmpdir(), 'files-copy-'));
        const copy = join(dir, 'input');
        await copyFile(local.path, copy);
        await local.release();
        await gates.csv.pass();
        return { path: copy, release: () => rm(dir, { recursive: true, force: true }) };
      },
      scratch: (n) => st.scratch(n),
      init: () => st.init(),
    });
    s = await startService({ pollMs: 50 }, { storage: wrap });
  });
  after(() => s.stop());

  const rows = (table: string, id: string) =>
    Number(
      (s.db!.prepare(`SELECT count(*) AS n FROM ${table} WHERE file_id = ?`).get(id) as { n: number }).n,
    );

  it('removes the thumbnail, the display copy and their rows when the file is deleted mid-job', async () => {
    gates.csv.open(); // only the image is held here
    const res = await fetch(`${s.url}/files?name=p.jpg`, {
      method: 'POST',
      body: await makeImage('jpeg', 800, 600),
    });
    assert.equal(res.status, 201);
    const { id } = (await res.json()) as { id: string };
    await within(gates.image.reached, 20_000, 'the image job to finish processing');
    assert.equal((await fetch(`${s.url}/files/${id}`, { method: 'DELETE' })).status, 204);
    gates.image.open();
    await within(s.runner.idle(), 20_000, 'the job to end');

    assert.deepEqual(filesUnder(join(s.dataDir, 'objects')), []);
    assert.equal(rows('derived', id), 0);
    assert.equal(rows('jobs', id), 0);
    assert.deepEqual(await s.queue.list({ fileId: id }), []);
    assert.equal((await fetch(`${s.url}/files/${id}`)).status, 404);
  });

  it('drops the CSV table a job made after its file was deleted', async () => {
    gates.csv = gate();
    const res = await fetch(`${s.url}/files?name=t.csv`, { method: 'POST', body: 'a,b\n1,2\n3,4\n' });
    assert.equal(res.status, 201);
    const { id } = (await res.json()) as { id: string };
    await within(gates.csv.reached, 20_000, 'the CSV job to start');
    assert.equal((await fetch(`${s.url}/files/${id}`, { method: 'DELETE' })).status, 204);
    gates.csv.open();
    await within(s.runner.idle(), 20_000, 'the job to end');

    const tables = s
      .db!.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?")
      .all(`${csvTableFor(id)}%`);
    assert.deepEqual(tables, []);
    assert.equal(rows('jobs', id), 0);
    assert.deepEqual(filesUnder(join(s.dataDir, 'objects')), []);
  });
});
