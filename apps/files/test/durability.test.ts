// "201 means durable": the database fsyncs before COMMIT returns (synchronous = FULL), and a worker killed with
// SIGKILL right after answering 201 keeps every upload it answered. (A power cut cannot be simulated here; the
// PRAGMA check is what guards it: with NORMAL, WAL commits are not fsynced.)
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { openDatabase } from '../src/db.ts';
import { freePort, startService } from './helpers.ts';

const server = new URL('../src/server.ts', import.meta.url).pathname;

describe('durability of a 201', () => {
  const children = new Set<ChildProcess>();
  const dirs: string[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('opens the database with synchronous = FULL (fsync at every commit) in WAL mode', async () => {
    const s = await startService({}, { runJobs: false });
    try {
      assert.deepEqual({ ...(s.db!.prepare('PRAGMA synchronous').get() as object) }, { synchronous: 2 });
      assert.deepEqual(
        { ...(s.db!.prepare('PRAGMA journal_mode').get() as object) },
        { journal_mode: 'wal' },
      );
    } finally {
      await s.stop();
    }
  });

  it('keeps every upload answered 201 when the process is killed with SIGKILL right after', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'files-durable-'));
    dirs.push(dataDir);
    const port = await freePort();
    const child = spawn(process.execPath, ['--conditions=weft-source', server], {
      env: {
        ...process.env,
        FILES_DATA_DIR: dataDir,
        FILES_PORT: String(port),
        FILES_LOG_LEVEL: 'info',
        FILES_CONCURRENCY: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    const exited = new Promise<string | null>((resolve) => child.once('exit', (_c, sig) => resolve(sig)));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not listen within 20 s:\n${out}`)), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d;
        if (out.includes('files listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr!.on('data', (d: Buffer) => {
        out += d;
      });
      child.once('exit', () => reject(new Error(`server exited before listening:\n${out}`)));
    });
    // Several uploads in flight; the first 201 kills the process at once (before it can answer the others).
    const answered: string[] = [];
    let killed = false;
    const uploads = Array.from(
      { length: 8 },
      (_, i) =>
        fetch(`http://127.0.0.1:${port}/files?name=n${i}.csv`, { method: 'POST', body: `a,b\n${i},x\n` })
          .then(async (res) => {
            if (res.status !== 201) return;
            const { id } = (await res.json()) as { id: string };
            answered.push(id);
            if (!killed) {
              killed = true;
              child.kill('SIGKILL');
            }
          })
          .catch(() => {}), // connections cut by the kill
    );
    await Promise.all(uploads);
    assert.equal(await exited, 'SIGKILL');
    assert.ok(answered.length >= 1, 'at least one upload was answered 201 before the kill');
    // A fresh connection (as the restarted worker would open) sees each answered upload and its job.
    const db = openDatabase(join(dataDir, 'files.db'));
    try {
      for (const id of answered) {
        assert.ok(db.prepare('SELECT id FROM files WHERE id = ?').get(id), `file ${id} answered 201 is kept`);
        const jobs = db.prepare('SELECT kind FROM jobs WHERE file_id = ?').all(id);
        assert.equal(jobs.length, 1, `the job of ${id} is kept`);
      }
    } finally {
      db.close();
    }
    // And the file opens with plain SQLite too (no half-written state left behind).
    const plain = new DatabaseSync(join(dataDir, 'files.db'), { readOnly: true });
    assert.equal(plain.prepare('PRAGMA integrity_check').get()!.integrity_check, 'ok');
    plain.close();
  });
});
