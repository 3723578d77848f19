// Fault injection (issue 16, item 7): 200 CSV uploads, each processed by a job, while one backend fails for 5 s.
// One test file per backend (faults-queue, faults-database, faults-storage, faults-disk), each well within the
// runner's per-file timeout on Node 22.
// The service reaches Redis, PostgreSQL and the S3 server through fault proxies (fault-proxy.ts), so the machine's
// own services are never touched; the disk fails through storage that throws ENOSPC. For every case: every upload
// is answered within 2 s (201, or 503 naming the failed backend with Retry-After; 507 for a full disk; with Redis
// down every upload is 201, its jobs kept in the outbox until the queue is back), no accepted
// upload is lost (its record, its bytes and its completed job are there at the end), no job completes twice, and
// uploads succeed again within 5 s of the backend's return. `FAULTS_TABLE=path` also writes the table as markdown
// (docs/files.md, "Fault injection"): each file appends its rows, the header first when the file is new.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Storage } from '../src/storage/types.ts';
import { type FaultMode, type FaultProxy, faultProxy } from './fault-proxy.ts';
import { type Running, startService, until } from './helpers.ts';
import {
  DATABASE_URL,
  REDIS_URL,
  type SharedBackends,
  serviceSkip,
  sharedBackends,
  via,
} from './services.ts';

const skip = await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL });

const UPLOADS = 200;
const BEFORE_MS = 2_000;
const FAULT_MS = 5_000;
const AFTER_MS = 6_000;
const ANSWER_TARGET_MS = 2_000;
const RECOVERY_TARGET_MS = 5_000;
/** How long the accepted uploads' jobs get to complete once the window is over. */
const SETTLE_MS = 60_000;

interface Answer {
  i: number;
  /** When it was sent, ms from the case's start. */
  at: number;
  ms: number;
  status: number;
  code?: string;
  retryAfter: string | null;
  id?: string;
  body: string;
}

interface Row {
  name: string;
  answers: Answer[];
  accepted: number;
  refused: number;
  maxMs: number;
  lost: number;
  twice: number;
  recoveryMs: number;
}

const rows: Row[] = [];

const csv = (i: number) => `a,b\n${i},row ${i}\n${i + 1},row ${i + 1}\n`;

/**
 * Sends the uploads at an even pace over the window (before, during and after the fault), each without waiting for
 * the others, and calls `fault(true)` / `fault(false)` at the window's marks. Resolves with every answer.
 */
async function run(s: Running, tag: string, fault: (on: boolean) => void): Promise<Answer[]> {
  const total = BEFORE_MS + FAULT_MS + AFTER_MS;
  const pace = total / UPLOADS;
  const t0 = performance.now();
  const pending: Promise<Answer>[] = [];
  let faulty = false;
  let ended = false;
  for (let i = 0; i < UPLOADS; i++) {
    const due = i * pace;
    const now = performance.now() - t0;
    if (due > now) await new Promise((r) => setTimeout(r, due - now));
    const at = performance.now() - t0;
    if (!faulty && at >= BEFORE_MS) {
      faulty = true;
      fault(true);
    }
    if (faulty && !ended && at >= BEFORE_MS + FAULT_MS) {
      ended = true;
      fault(false);
    }
    pending.push(
      (async (): Promise<Answer> => {
        const sent = performance.now();
        const res = await fetch(`${s.url}/files?name=${tag}-${i}.csv`, {
          method: 'POST',
          body: csv(i),
          signal: AbortSignal.timeout(60_000),
        });
        const body = await res.text();
        const ms = performance.now() - sent;
        let parsed: { id?: string; error?: { code?: string } } = {};
        try {
          parsed = JSON.parse(body);
        } catch {}
        return {
          i,
          at: sent - t0,
          ms,
          status: res.status,
          code: parsed.error?.code,
          retryAfter: res.headers.get('retry-after'),
          id: parsed.id,
          body,
        };
      })(),
    );
  }
  const answers = await Promise.all(pending);
  if (!ended) fault(false);
  return answers;
}

/**
 * ms from the backend's return until uploads succeed again: the send time of the first upload after the return
 * from which on every upload was accepted (0 when none failed after the return).
 */
function recovery(answers: Answer[], okStatus = 201): number {
  const back = BEFORE_MS + FAULT_MS;
  const after = answers.filter((a) => a.at >= back);
  let firstGood = -1;
  for (let k = after.length - 1; k >= 0; k--) {
    if (after[k]!.status !== okStatus) break;
    firstGood = k;
  }
  if (firstGood < 0) return Number.POSITIVE_INFINITY;
  return firstGood === 0 ? 0 : after[firstGood]!.at - back;
}

/** Checks the answers against the targets; `allowed` is the refusal's status and code (none: every one is 201). */
function checkAnswers(answers: Answer[], allowed: { status: number; code: string } | undefined) {
  for (const a of answers) {
    assert.ok(
      a.status === 201 || (a.status === allowed?.status && a.code === allowed.code),
      `upload ${a.i} (sent at ${Math.round(a.at)} ms) answered ${a.status}: ${a.body.slice(0, 300)}`,
    );
    if (a.status !== 201)
      assert.ok(a.retryAfter || a.status === 507, `upload ${a.i}: ${a.status} without Retry-After`);
    assert.ok(
      a.ms <= ANSWER_TARGET_MS,
      `upload ${a.i} (sent at ${Math.round(a.at)} ms) answered in ${Math.round(a.ms)} ms`,
    );
  }
}

/**
 * Waits until the job of every accepted upload completed (bounded), then counts the accepted uploads that are lost:
 * no record, other bytes, or a job that did not complete.
 */
async function lostUploads(
  s: Running,
  answers: Answer[],
): Promise<{ lost: number; twiceQueued: number; why: string[] }> {
  const accepted = answers.filter((a) => a.status === 201 && a.id);
  const open = new Set(accepted.map((a) => a.id!));
  const deadline = performance.now() + SETTLE_MS;
  while (open.size > 0 && performance.now() < deadline) {
    for (const id of [...open]) {
      const jobs = await s.queue.list({ fileId: id }).catch(() => undefined);
      if (jobs && jobs.length > 0 && jobs.every((j) => j.state === 'completed')) open.delete(id);
    }
    if (open.size > 0) await new Promise((r) => setTimeout(r, 250));
  }
  const why: string[] = [];
  let twiceQueued = 0;
  for (const a of accepted) {
    const id = a.id!;
    const record = await s.catalog.get(id);
    const content = await fetch(`${s.url}/files/${id}/content`);
    const bytes = content.status === 200 ? await content.text() : '';
    const jobs = await s.queue.list({ fileId: id });
    if (jobs.length > 1) twiceQueued++;
    const problems = [
      !record && 'no record',
      bytes !== csv(a.i) && `content ${content.status}`,
      open.has(id) && `jobs ${jobs.map((j) => `${j.id}:${j.state}`).join(',') || 'none'}`,
    ].filter(Boolean);
    if (problems.length > 0) why.push(`upload ${a.i} (${id}): ${problems.join(', ')}`);
  }
  return { lost: why.length, twiceQueued, why };
}

function record(name: string, answers: Answer[], lost: number, twice: number, recoveryMs: number) {
  const row: Row = {
    name,
    answers,
    accepted: answers.filter((a) => a.status === 201).length,
    refused: answers.filter((a) => a.status !== 201).length,
    maxMs: Math.max(...answers.map((a) => a.ms)),
    lost,
    twice,
    recoveryMs,
  };
  rows.push(row);
  if (process.env.FAULTS_DEBUG) {
    for (const a of answers.filter((x) => x.ms >= 500)) {
      console.log(
        `#   slow: upload ${a.i} sent at ${Math.round(a.at)} ms: ${a.status} ${a.code ?? ''} in ${Math.round(a.ms)} ms`,
      );
    }
  }
  console.log(
    `# ${name}: ${row.accepted} × 201, ${row.refused} refused, max ${Math.round(row.maxMs)} ms, lost ${lost}, completed twice ${twice}, recovered in ${(recoveryMs / 1000).toFixed(2)} s`,
  );
}

after(() => {
  if (rows.length === 0) return;
  const lines = [
    '| Backend, fault | uploads | answered 201 | refused (503 or 507) | max latency | accepted but lost | completed twice | recovery |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.answers.length} | ${r.accepted} | ${r.refused} | ${Math.round(r.maxMs)} ms | ${r.lost} | ${r.twice} | ${(r.recoveryMs / 1000).toFixed(2)} s |`,
    ),
  ];
  const path = process.env.FAULTS_TABLE;
  if (path) appendFileSync(path, `${(existsSync(path) ? lines.slice(2) : lines).join('\n')}\n`);
});

type Backend = 'queue' | 'database' | 'storage';

const LABELS: Record<Backend, [label: string, code: string]> = {
  queue: ['Redis', 'ERR_WEFT_FILES_QUEUE_UNAVAILABLE'],
  database: ['PostgreSQL', 'ERR_WEFT_FILES_DATABASE_UNAVAILABLE'],
  storage: ['S3', 'ERR_WEFT_FILES_STORAGE_UNAVAILABLE'],
};

/** The cut and blackhole cases of one backend, on a service that reaches every backend through a fault proxy. */
export function backendFaults(only: Backend, modes: readonly FaultMode[] = ['cut', 'blackhole']): void {
  describe(`fault injection: ${LABELS[only][0]} ${modes.join(' or ')} for 5 s under 200 uploads`, {
    skip,
  }, () => {
    let shared: SharedBackends;
    const proxies: Record<'queue' | 'database' | 'storage', FaultProxy> = {} as never;
    let s: Running;
    /** job.completed events by job id, over the whole run. */
    const completed = new Map<number, number>();
    let off: (() => void) | undefined;

    before(async () => {
      shared = await sharedBackends('faults');
      const redis = new URL(REDIS_URL);
      const postgres = new URL(DATABASE_URL);
      const s3 = new URL(new URL(shared.urls.storageUrl).searchParams.get('endpoint')!);
      proxies.queue = await faultProxy({
        target: { host: redis.hostname, port: Number(redis.port || 6379) },
      });
      proxies.database = await faultProxy({
        target: { host: postgres.hostname, port: Number(postgres.port || 5432) },
      });
      proxies.storage = await faultProxy({ target: { host: s3.hostname, port: Number(s3.port) } });
      const storage = new URL(shared.urls.storageUrl);
      storage.searchParams.set('endpoint', `http://127.0.0.1:${proxies.storage.port}`);
      s = await startService({
        queueUrl: via(shared.urls.queueUrl, proxies.queue.port),
        databaseUrl: via(shared.urls.databaseUrl, proxies.database.port),
        storageUrl: storage.href,
      });
      off = s.bus.on('job.completed', (e) => {
        completed.set(e.data.jobId, (completed.get(e.data.jobId) ?? 0) + 1);
      });
    });
    after(async () => {
      off?.();
      for (const p of Object.values(proxies)) p?.set('pass');
      await s?.stop();
      for (const p of Object.values(proxies)) await p?.close();
      await shared?.cleanup();
    });

    const [label, code] = LABELS[only];
    const cases = modes.map((mode: FaultMode) => ({
      backend: only,
      label,
      mode,
      code,
    }));

    for (const { backend, label, mode, code } of cases) {
      it(`${label} ${mode} for 5 s: every upload answered in 2 s, none lost, none twice, back within 5 s`, async (t) => {
        t.after(() => proxies[backend].set('pass'));
        // Start from a healthy service: the previous case's backend is back and its breaker closed.
        await until(() => Object.values(s.guards).every((g) => g.up), 10_000, 'every breaker closed');
        const answers = await run(s, `${backend}-${mode}`, (on) => proxies[backend].set(on ? mode : 'pass'));
        const recoveryMs = recovery(answers);
        const { lost, twiceQueued, why } = await lostUploads(s, answers);
        const ids = new Set<number>();
        for (const a of answers.filter((x) => x.status === 201)) {
          for (const j of await s.queue.list({ fileId: a.id! })) ids.add(j.id);
        }
        const twice = [...ids].filter((id) => (completed.get(id) ?? 0) > 1).length + twiceQueued;
        record(`${label}, ${mode} 5 s`, answers, lost, twice, recoveryMs);
        // A Redis outage refuses no upload: the outbox keeps its jobs until the queue is back.
        checkAnswers(answers, backend === 'queue' ? undefined : { status: 503, code });
        assert.equal(lost, 0, why.join('\n'));
        assert.equal(twice, 0, 'no job completed twice, no upload queued twice');
        assert.ok(
          recoveryMs <= RECOVERY_TARGET_MS,
          `uploads back ${Math.round(recoveryMs)} ms after the return`,
        );
      });
    }
  });
}

/** The full disk on the embedded defaults (SQLite and the local disk): storage that throws ENOSPC for 5 s. */
export function diskFaults(): void {
  describe('fault injection: the disk full (ENOSPC) for 5 s under 200 uploads, embedded defaults', () => {
    let s: Running;
    let full = false;
    const completed = new Map<number, number>();
    let off: (() => void) | undefined;
    const enospc = () =>
      Object.assign(new Error('ENOSPC: no space left on device, write'), {
        code: 'ENOSPC',
        errno: -28,
        syscall: 'write',
      });

    before(async () => {
      // Storage that fails like a full file system: a write fails with ENOSPC after taking some bytes.
      const wrap = (st: Storage): Storage => ({
        put: async (k, src, o) => {
          if (!full) return st.put(k, src, o);
          for await (const _chunk of src) break;
          src.destroy();
          throw enospc();
        },
        putFile: (k, p) => (full ? Promise.reject(enospc()) : st.putFile(k, p)),
        read: (k, r) => st.read(k, r),
        stat: (k) => st.stat(k),
        delete: (k, o) => st.delete(k, o),
        localPath: (k) => st.localPath(k),
        scratch: (n) => st.scratch(n),
        init: () => st.init(),
      });
      s = await startService({}, { storage: wrap });
      off = s.bus.on('job.completed', (e) => {
        completed.set(e.data.jobId, (completed.get(e.data.jobId) ?? 0) + 1);
      });
    });
    after(async () => {
      off?.();
      await s?.stop();
    });

    it('every upload answered 201 or 507 in 2 s, none lost, none twice, back as soon as space is freed', async () => {
      const answers = await run(s, 'disk', (on) => {
        full = on;
      });
      const recoveryMs = recovery(answers);
      const { lost, twiceQueued, why } = await lostUploads(s, answers);
      const ids = new Set<number>();
      for (const a of answers.filter((x) => x.status === 201)) {
        for (const j of await s.queue.list({ fileId: a.id! })) ids.add(j.id);
      }
      const twice = [...ids].filter((id) => (completed.get(id) ?? 0) > 1).length + twiceQueued;
      record('disk (embedded), ENOSPC 5 s', answers, lost, twice, recoveryMs);
      checkAnswers(answers, { status: 507, code: 'ERR_WEFT_FILES_NO_SPACE' });
      assert.ok(
        answers.some((a) => a.status === 507),
        'the full disk was seen',
      );
      assert.equal(lost, 0, why.join('\n'));
      assert.equal(twice, 0);
      assert.ok(
        recoveryMs <= RECOVERY_TARGET_MS,
        `uploads back ${Math.round(recoveryMs)} ms after space was freed`,
      );
    });
  });
}
