/**
 * The measurements of the `files` benchmark area (`bench/files.ts` runs them): the inputs' sizes, and one function
 * per measurement against the service, the node:http baselines and bare sharp, each bounded in time.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, open, rename, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Input } from './files-data.ts';
import { groupCpu, type ProcessPeak, sampleGroup, workersResident } from './files-proc.ts';
import type {
  CsvSample,
  E2eSample,
  MemorySample,
  SmallSample,
  ThumbSample,
  UploadSample,
} from './files-report.ts';
import { type Group, getJson, startService, until, uploadFile } from './files-service.ts';

export const SIZES = {
  blobs: 10,
  blobBytes: 100_000_000,
  photos: 40,
  photo: [3000, 2000] as const,
  big: [4000, 3000] as const,
  csvRows: 1_000_000,
  e2ePerRound: 5,
  memoryPhotos: 24,
  /**
   * (6) Small uploads: how many, how big, how many at once; unmeasured batches each server takes first (JIT
   * warm-up: a fresh service's first 8,000 or so uploads ran slower); measured batches per round.
   */
  small: { count: 2_000, bytes: 400, concurrency: 16, warmup: 3, perRound: 5 },
  /** Seconds idle before the idle reading, and after the photos before the last one. */
  memoryIdleSeconds: [3, 20] as const,
  concurrency: 2,
};

interface FileAnswer {
  id: string;
  size: number;
  type: string;
  jobs: { id: number; kind: string }[];
}
interface JobAnswer {
  id: number;
  state: string;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  lastError: string | null;
  result: { rows?: number } | null;
}
type Counts = Record<'queued' | 'active' | 'retrying' | 'completed' | 'dead', number>;

export type Service = Awaited<ReturnType<typeof startService>>;

/** Uploads `inputs` to `url(i)`, `concurrency` at a time; resolves with the answers in input order. */
async function uploadAll<T>(inputs: Input[], url: (i: number) => string, concurrency: number): Promise<T[]> {
  const answers: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < inputs.length) {
        const i = next++;
        const { status, body } = await uploadFile<T>(url(i), inputs[i]!.path, inputs[i]!.size);
        if (status !== 201) throw new Error(`upload ${i}: status ${status}: ${JSON.stringify(body)}`);
        answers[i] = body;
      }
    }),
  );
  return answers;
}

export const settle = () =>
  new Promise<void>((resolve) => execFile('sync', { timeout: 120_000 }, () => resolve()));

async function counts(s: Service): Promise<Counts> {
  const { body } = await getJson<{ counts: Counts }>(`${s.url}/jobs?limit=1`);
  if (!body) throw new Error('GET /jobs answered no JSON');
  return body.counts;
}

async function deleteFiles(s: Service, ids: string[]): Promise<void> {
  for (const id of ids) {
    const { status } = await getJson(`${s.url}/files/${id}`, 'DELETE');
    if (status !== 204) throw new Error(`DELETE /files/${id}: ${status}`);
  }
}

/**
 * Run time (ms) of each completed job: from its latest attempt's claim (`startedAt`) to its completion
 * (`finishedAt`), as the queue recorded them.
 */
function runTimes(jobs: readonly JobAnswer[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const j of jobs) {
    if (j.startedAt === null || j.finishedAt === null) throw new Error(`job ${j.id} has no start or end`);
    out.set(j.id, j.finishedAt - j.startedAt);
  }
  return out;
}

/** Waits until `ids` are all completed; fails at once when one fails. */
async function jobsDone(s: Service, ids: readonly number[], ms: number): Promise<JobAnswer[]> {
  return until(
    async () => {
      const jobs: JobAnswer[] = [];
      for (const id of ids) {
        const { body } = await getJson<JobAnswer>(`${s.url}/jobs/${id}`);
        if (!body) return undefined;
        if (body.state === 'dead' || body.state === 'retrying')
          throw new Error(`job ${id}: ${body.lastError}`);
        if (body.state !== 'completed') return undefined;
        jobs.push(body);
      }
      return jobs;
    },
    ms,
    `${ids.length} jobs to complete`,
    100,
  );
}

/** (1) The ten blobs, 2 at a time; the group's memory sampled throughout. */
export async function measureUpload(
  target: Group | Service,
  kind: 'service' | 'sink',
  blobs: Input[],
): Promise<UploadSample> {
  const sampler = sampleGroup(target.child.pid!);
  let peaks: ProcessPeak[];
  const t = performance.now();
  let answers: FileAnswer[];
  try {
    const url = (i: number) =>
      kind === 'service' ? `${target.url}/files?name=blob-${i}.bin` : `${target.url}/`;
    answers = await uploadAll<FileAnswer>(blobs, url, SIZES.concurrency);
  } finally {
    peaks = sampler.stop();
  }
  const seconds = (performance.now() - t) / 1000;
  const bytes = blobs.reduce((n, b) => n + b.size, 0);
  answers.forEach((a, i) => {
    if (a.size !== blobs[i]!.size)
      throw new Error(`upload ${i}: stored ${a.size} of ${blobs[i]!.size} bytes`);
    if (kind === 'service' && (a.type !== 'application/octet-stream' || a.jobs.length > 0))
      throw new Error(`upload ${i}: stored as ${a.type} with ${a.jobs.length} jobs`);
  });
  if (kind === 'service')
    await deleteFiles(
      target as Service,
      answers.map((a) => a.id),
    );
  const cpuPerGb = peaks.reduce((a, p) => a + p.cpu, 0) / (bytes / 1e9);
  return { seconds, mbps: bytes / 1e6 / seconds, cpuPerGb, peaks };
}

/** (2a) The photos uploaded 2 at a time, then every image job completed. */
export async function measureServiceThumbs(s: Service, photos: Input[]): Promise<ThumbSample> {
  const before = await counts(s);
  if (before.queued + before.active + before.retrying > 0) throw new Error('the service is not idle');
  const sampler = sampleGroup(s.child.pid!);
  let peaks: ProcessPeak[];
  let answers: FileAnswer[] = [];
  const t0 = Date.now();
  let uploaded = 0;
  let jobs: JobAnswer[];
  try {
    answers = await uploadAll<FileAnswer>(
      photos,
      (i) => `${s.url}/files?name=photo-${i}.jpg`,
      SIZES.concurrency,
    );
    uploaded = Date.now();
    const ids = answers.flatMap((a) => a.jobs.map((j) => j.id));
    if (ids.length !== photos.length) throw new Error(`${ids.length} image jobs for ${photos.length} photos`);
    await until(
      async () => {
        const c = await counts(s);
        if (c.dead > before.dead || c.retrying > 0)
          throw new Error(`image jobs failed: ${JSON.stringify(c)}`);
        return c.completed - before.completed >= ids.length ? c : undefined;
      },
      300_000,
      'every image job to complete',
      250,
    );
    jobs = await jobsDone(s, ids, 10_000);
  } finally {
    peaks = sampler.stop();
  }
  const runs = runTimes(jobs);
  const starts = jobs.map((j) => j.finishedAt! - (runs.get(j.id) ?? Number.NaN));
  const firstStart = Math.min(...starts);
  const lastEnd = Math.max(...jobs.map((j) => j.finishedAt!));
  await deleteFiles(
    s,
    answers.map((a) => a.id),
  );
  const n = photos.length;
  return {
    perSecond: n / ((lastEnd - firstStart) / 1000),
    perSecondWithUpload: n / ((lastEnd - t0) / 1000),
    uploadSeconds: (uploaded - t0) / 1000,
    meanMs: [...runs.values()].reduce((a, b) => a + b, 0) / runs.size,
    cpuMsPerImage: (peaks.reduce((a, p) => a + p.cpu, 0) * 1000) / n,
    libvipsMsPerImage: (peaks.reduce((a, p) => a + p.libvipsCpu, 0) * 1000) / n,
    peaks,
  };
}

/**
 * Waits (polling the counts every 250 ms, as a client would) until as many jobs as `ids` completed on a service that
 * ran nothing else, failing at once when one failed; resolves with those jobs.
 */
async function allCompleted(s: Service, ids: readonly number[]): Promise<JobAnswer[]> {
  await until(
    async () => {
      const c = await counts(s);
      if (c.dead > 0 || c.retrying > 0) throw new Error(`image jobs failed: ${JSON.stringify(c)}`);
      return c.completed >= ids.length ? c : undefined;
    },
    300_000,
    'every image job to complete',
    250,
  );
  return jobsDone(s, ids, 10_000);
}

/** Warm-up images of the jobs-only measurement: one for each worker process, as bare sharp warms its one process. */
export const JOBS_ONLY_WARMUP = 2;

/**
 * (2b) Image jobs alone, as bare sharp runs them: the photos (after {@link JOBS_ONLY_WARMUP} warm-up copies) are
 * uploaded first through an upload-only node (`FILES_CONCURRENCY=0`), which is then stopped; a fresh service with 2
 * workers is started on the same data directory and runs the queued jobs. Images/s counts from the first timed job's
 * start to the last one's end (the runner's `startedAt` and `finishedAt`); CPU is every process of the service from
 * its ready line to the last job, warm-up jobs and the start of the pool threads included, per job.
 */
export async function measureServiceJobsOnly(
  photos: Input[],
  scratch: string,
  /** Added to the service's environment (`BENCH_BUILD_ROOT`: another checkout's build). */
  extra: Record<string, string> = {},
): Promise<ThumbSample> {
  const dataDir = mkdtempSync(join(scratch, 'jobs-only-'));
  try {
    const inputs = [...photos.slice(0, JOBS_ONLY_WARMUP), ...photos];
    const gateway = await startService({ ...extra, FILES_DATA_DIR: dataDir, FILES_CONCURRENCY: '0' }, 1);
    let answers: FileAnswer[];
    try {
      answers = await uploadAll<FileAnswer>(
        inputs,
        (i) => `${gateway.url}/files?name=photo-${i}.jpg`,
        SIZES.concurrency,
      );
    } finally {
      await gateway.stop();
    }
    const ids = answers.map((a) => a.jobs[0]!.id);
    const service = await startService({ ...extra, FILES_DATA_DIR: dataDir });
    const sampler = sampleGroup(service.child.pid!);
    let peaks: ProcessPeak[] | undefined;
    let jobs: JobAnswer[];
    try {
      jobs = await allCompleted(service, ids);
      peaks = sampler.stop();
    } finally {
      peaks ??= sampler.stop();
      await service.stop();
    }
    const timed = jobs.slice(JOBS_ONLY_WARMUP);
    const firstStart = Math.min(...timed.map((j) => j.startedAt!));
    const lastEnd = Math.max(...timed.map((j) => j.finishedAt!));
    return {
      perSecond: timed.length / ((lastEnd - firstStart) / 1000),
      meanMs: timed.reduce((a, j) => a + (j.finishedAt! - j.startedAt!), 0) / timed.length,
      cpuMsPerImage: (peaks.reduce((a, p) => a + p.cpu, 0) * 1000) / jobs.length,
      libvipsMsPerImage: (peaks.reduce((a, p) => a + p.libvipsCpu, 0) * 1000) / jobs.length,
      peaks,
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * (5) Memory of the worker processes: a fresh service idle for a few seconds after its workers are ready, then
 * {@link SIZES.memoryPhotos} photos uploaded 2 at a time and their image jobs run (peak sampled every 100 ms), then
 * idle again. `env` is added to the service's environment (an allocator setting).
 */
export async function measureMemory(photos: Input[], env: Record<string, string>): Promise<MemorySample> {
  const [before, afterIdle] = SIZES.memoryIdleSeconds;
  const service = await startService(env);
  try {
    await new Promise((r) => setTimeout(r, before * 1000));
    const idle = workersResident(service.child.pid!);
    const sampler = sampleGroup(service.child.pid!);
    let peaks: ProcessPeak[] | undefined;
    let jobs: JobAnswer[];
    try {
      const answers = await uploadAll<FileAnswer>(
        photos,
        (i) => `${service.url}/files?name=photo-${i}.jpg`,
        SIZES.concurrency,
      );
      const ids = answers.map((a) => a.jobs[0]!.id);
      jobs = await allCompleted(service, ids);
      peaks = sampler.stop();
    } finally {
      peaks ??= sampler.stop();
    }
    const done = workersResident(service.child.pid!);
    await new Promise((r) => setTimeout(r, afterIdle * 1000));
    const later = workersResident(service.child.pid!);
    const firstStart = Math.min(...jobs.map((j) => j.startedAt!));
    const lastEnd = Math.max(...jobs.map((j) => j.finishedAt!));
    const workers = peaks.filter((p) => !p.leader);
    return {
      idle,
      peak: workers.map((p) => ({ pid: p.pid, rss: Math.max(p.sampled, p.hwm ?? 0), anon: p.anon })),
      done,
      later,
      perSecond: jobs.length / ((lastEnd - firstStart) / 1000),
      cpuMsPerImage: (peaks.reduce((a, p) => a + p.cpu, 0) * 1000) / jobs.length,
    };
  } finally {
    await service.stop();
  }
}

/**
 * The allocator settings (5) compares: the service's (one glibc arena per worker, `apps/files/weft.config.mjs`),
 * glibc's default, 2 arenas, and jemalloc where it is installed. The first is the one the targets are read from.
 */
export function allocators(): { name: string; env: Record<string, string> }[] {
  const out: { name: string; env: Record<string, string> }[] = [
    { name: 'glibc, MALLOC_ARENA_MAX=1 (the service’s setting)', env: { MALLOC_ARENA_MAX: '1' } },
    // glibc's own default on 64-bit: 8 arenas per core.
    {
      name: 'glibc default (8 arenas per core)',
      env: { MALLOC_ARENA_MAX: String(8 * availableParallelism()) },
    },
    { name: 'glibc, MALLOC_ARENA_MAX=2', env: { MALLOC_ARENA_MAX: '2' } },
  ];
  const jemalloc = [
    '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2',
    '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2',
  ].find((p) => existsSync(p));
  if (jemalloc) out.push({ name: 'jemalloc (LD_PRELOAD)', env: { LD_PRELOAD: jemalloc } });
  return out;
}

/**
 * (6) {@link SIZES.small} uploads of random bytes (a new body each), `concurrency` at a time on as many keep-alive
 * connections, POSTed to `url` (the service stores them as `application/octet-stream`, so no job is queued); every
 * one must answer 201.
 */
export async function measureSmallUploads(url: string, pgid: number): Promise<SmallSample> {
  const { count, bytes, concurrency } = SIZES.small;
  const cpuOf = () => [...groupCpu(pgid).values()].reduce((a, b) => a + b, 0);
  const keepAlive = new Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let next = 0;
  const post = (i: number) =>
    new Promise<void>((resolve, reject) => {
      const body = randomBytes(bytes);
      const t = performance.now();
      const req = request(
        `${url}/files?name=small-${i}.bin`,
        {
          method: 'POST',
          agent: keepAlive,
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 201) reject(new Error(`small upload ${i}: status ${res.statusCode}`));
            else {
              latencies.push(performance.now() - t);
              resolve();
            }
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  try {
    const cpu0 = cpuOf();
    const client0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) await post(next++);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const client = process.cpuUsage(client0);
    const serverCpuMs = ((cpuOf() - cpu0) * 1000) / count;
    latencies.sort((a, b) => a - b);
    return {
      perSecond: count / seconds,
      serverCpuMs,
      clientCpuMs: (client.user + client.system) / 1000 / count,
      p50Ms: latencies[Math.floor(latencies.length * 0.5)]!,
      p95Ms: latencies[Math.floor(latencies.length * 0.95)]!,
    };
  } finally {
    keepAlive.destroy();
  }
}

interface BareResult {
  libvipsThreads: number;
  totalMs: number;
  cpuMs: number;
  libvipsCpuMs: number;
  images: { ms: number; thumbnailMs: number }[];
  maxRssBytes: number;
}

/** Bare sharp in a child process of its own (`bench/fixtures/files-sharp.ts`). */
export function bareSharp(inputs: string[], concurrency: number, scratch: string): Promise<BareResult> {
  const outDir = mkdtempSync(join(scratch, 'sharp-out-'));
  const job = JSON.stringify({ inputs, outDir, concurrency, warmup: 1 });
  const fixture = new URL('./fixtures/files-sharp.ts', import.meta.url).pathname;
  return new Promise<BareResult>((resolve, reject) => {
    execFile(process.execPath, [fixture, job], { timeout: 300_000 }, (err, stdout, stderr) => {
      rmSync(outDir, { recursive: true, force: true });
      if (err) reject(new Error(`bare sharp failed: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as BareResult);
    });
  });
}

/** (3) The CSV uploaded, then its job completed: rows/s from the upload's end (the job's creation) to completion. */
export async function measureCsv(s: Service, csv: Input): Promise<CsvSample> {
  const sampler = sampleGroup(s.child.pid!);
  let peaks: ProcessPeak[];
  let answer: FileAnswer;
  let job: JobAnswer;
  const t = performance.now();
  let uploadSeconds = 0;
  try {
    const { status, body } = await uploadFile<FileAnswer>(`${s.url}/files?name=data.csv`, csv.path, csv.size);
    uploadSeconds = (performance.now() - t) / 1000;
    if (status !== 201 || body.type !== 'text/csv' || body.jobs.length !== 1)
      throw new Error(`CSV upload: ${status} ${JSON.stringify(body)}`);
    answer = body;
    [job] = (await jobsDone(s, [body.jobs[0]!.id], 600_000)) as [JobAnswer];
  } finally {
    peaks = sampler.stop();
  }
  const rows = job.result?.rows ?? 0;
  if (rows !== SIZES.csvRows) throw new Error(`the CSV job loaded ${rows} rows of ${SIZES.csvRows}`);
  const runMs = runTimes([job]).get(job.id) ?? Number.NaN;
  await deleteFiles(s, [answer.id]);
  return {
    rows,
    uploadSeconds,
    seconds: (job.finishedAt! - job.createdAt) / 1000,
    runSeconds: runMs / 1000,
    peaks,
  };
}

/** (4) One 12 MP photo at a time: upload until `GET …/derived/thumbnail.webp` answers 200. */
export async function measureServiceE2e(s: Service, big: Input): Promise<E2eSample> {
  const ms: number[] = [];
  const uploadMs: number[] = [];
  const sampler = sampleGroup(s.child.pid!);
  let peaks: ProcessPeak[];
  try {
    for (let i = 0; i < SIZES.e2ePerRound; i++) {
      const t = performance.now();
      const { status, body } = await uploadFile<FileAnswer>(
        `${s.url}/files?name=big.jpg`,
        big.path,
        big.size,
      );
      if (status !== 201 || body.jobs.length !== 1)
        throw new Error(`upload: ${status} ${JSON.stringify(body)}`);
      uploadMs.push(performance.now() - t);
      const thumbnail = `${s.url}/files/${body.id}/derived/thumbnail.webp`;
      await until(
        async () => ((await getJson(thumbnail)).status === 200 ? true : undefined),
        60_000,
        'the thumbnail to be servable',
        10,
      );
      ms.push(performance.now() - t);
      await jobsDone(s, [body.jobs[0]!.id], 60_000);
      await deleteFiles(s, [body.id]);
    }
  } finally {
    peaks = sampler.stop();
  }
  return { ms, uploadMs, peaks };
}

/**
 * What the service does on this disk, per image, to make its two outputs durable, without the image work: each
 * output written flushed and renamed (the processor), then fsynced, renamed into storage and its directory fsynced
 * (`DiskStorage.putFile`). Outputs of a thumbnail's and a display copy's typical sizes; median ms over `n` images.
 */
export async function durableOutputsMs(scratch: string, n = 10): Promise<number> {
  const dir = mkdtempSync(join(scratch, 'durable-'));
  const sync = async (path: string, flags: string) => {
    const fh = await open(path, flags);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      for (const [name, size] of [
        ['thumbnail', 16_000],
        ['display', 500_000],
      ] as const) {
        const made = join(dir, `${i}-${name}.webp`);
        await writeFile(`${made}.tmp`, Buffer.alloc(size, i), { flush: true });
        await rename(`${made}.tmp`, made);
        await sync(made, 'r+');
        const stored = join(dir, 'objects', String(i));
        await mkdir(stored, { recursive: true });
        await rename(made, join(stored, name));
        await sync(stored, 'r');
      }
      times.push(performance.now() - t);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return times.sort((a, b) => a - b)[Math.floor(n / 2)]!;
}

export async function clearDir(dir: string): Promise<void> {
  for (const name of readdirSync(dir)) rmSync(join(dir, name), { force: true });
}
