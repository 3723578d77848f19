/**
 * Runs jobs in this process: claims them from the shared queue with a lease, runs their processor in the thread
 * pool, records the outcome, and keeps the leases alive while they run. On shutdown it stops claiming, lets running
 * jobs finish until its deadline, then aborts the rest and gives them back to the queue (not counted as attempts).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Pool } from 'weftjs/pool';
import type { Catalog } from './catalog/types.ts';
import type { FilesConfig } from './config.ts';
import { FilesError } from './errors.ts';
import type { FilesBus } from './events/bus.ts';
import type { EventType, FilesEvents } from './events/types.ts';
import { ThrottledLog } from './log-throttle.ts';
import type { Logger } from './logger.ts';
import { loadSharp, type ProcessorTasks } from './processors/index.ts';
import { jobResult, ProcessorRegistry } from './processors/registry.ts';
import type { FollowUp, FollowUps, Job, JobQueue } from './queue/types.ts';
import { derivedKey, derivedPrefix, originalKey, type Storage } from './storage/types.ts';
import { kindsFor } from './upload.ts';
import type { Webhooks } from './webhooks.ts';

/** Errors that another attempt cannot fix: the job goes to the dead-letter state at once. */
const PERMANENT = new Set([
  // Besides those each processor declares (`permanent` of its module; builtin.ts for the image and CSV ones).
  'ERR_WEFT_FILES_INPUT_MISSING',
  'ERR_WEFT_FILES_NOT_FOUND',
  // A webhook refused by its receiver (4xx but 408 and 429), or whose URL is not allowed (any more).
  'ERR_WEFT_FILES_WEBHOOK_REJECTED',
  'ERR_WEFT_FILES_WEBHOOK_URL',
  // A processor plug-in returned outputs or a result the service cannot store: a bug no retry mends.
  'ERR_WEFT_FILES_PROCESSOR_OUTPUT',
]);

/** Webhook deliveries that may run beyond `concurrency` (they wait on a network, not on a thread). */
const WEBHOOK_SLOTS = 16;

export interface RunnerDeps {
  queue: JobQueue;
  catalog: Catalog;
  storage: Storage;
  pool: Pool<ProcessorTasks>;
  bus: Pick<FilesBus, 'publish'>;
  log: Logger;
  config: Pick<
    FilesConfig,
    'concurrency' | 'pollMs' | 'leaseMs' | 'jobTimeoutMs' | 'limitInputPixels' | 'csvMaxBadRows'
  > &
    Partial<Pick<FilesConfig, 'imageVariants' | 'maxAttempts'>>;
  /**
   * Runs a job instead of the processors (benchmarks of the queue alone use a no-op here). Default: the job's
   * processor (see `processors`) in `pool`. `computed`, when called, says the job no longer needs its thread (what
   * is left, such as storing its outputs, waits on the disk or the database): its slot goes to the next job.
   */
  execute?: (job: Job, signal: AbortSignal, computed: () => void) => Promise<unknown>;
  /**
   * Webhooks, when configured: processing outcomes get their `file.processed` / `job.dead` follow-ups, and `webhook`
   * jobs are sent on this thread. Without it nothing is queued, and a `webhook` job found in the queue is dead.
   */
  webhooks?: Pick<Webhooks, 'completed' | 'failed' | 'deliver'> | undefined;
  /**
   * The processors: the built-in image and CSV ones and the configured plug-ins, whose modules run in `pool`.
   * Default: the built-ins alone, with `config`'s settings.
   */
  processors?: ProcessorRegistry;
  /** Longest wait between claims while the queue fails (a locked or full database). Default 5 s. */
  maxBackoffMs?: number;
  /** Repeated failures (claims, heartbeats) are logged once per this interval. Default 60 s. */
  logIntervalMs?: number;
}

/** A file a job made in its output folder, to store as one of the file's derived outputs. */
interface MadeOutput {
  name: string;
  path: string;
  type: string;
  size: number;
  width?: number | null;
  height?: number | null;
}

/** A job whose file was deleted while it ran: its outputs were removed, and so is the job. */
class FileGone extends FilesError {
  constructor(fileId: string) {
    super('ERR_WEFT_FILES_NOT_FOUND', `file ${fileId} was deleted`);
  }
}

interface Running {
  job: Job;
  controller: AbortController;
  done: Promise<void>;
  /** When its lease was last known extended (the claim, or the send of the last heartbeat that held it). */
  renewedAt: number;
  /**
   * Done with its thread: storing its outputs and recording its outcome, which wait on the disk and the database.
   * It no longer holds a slot of `concurrency` (see {@link JobRunner.#free}).
   */
  finishing: boolean;
}

/** Why a job is aborted when its lease ran out unrenewed: its outcome is not recorded by this process. */
class LeaseExpired extends Error {
  override name = 'LeaseExpired';
}

export class JobRunner {
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  readonly #d: RunnerDeps;
  /** The processors jobs run with: the configured registry, else the built-ins alone. */
  readonly #processors: ProcessorRegistry;
  readonly #running = new Map<number, Running>();
  /** Runs stopped because their lease expired, until their abort has settled (close waits for them too). */
  readonly #expired = new Set<Promise<void>>();
  #closing = false;
  #wake: (() => void) | undefined;
  #nudged = false;
  #loop: Promise<void> | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  readonly #errors: ThrottledLog;

  constructor(deps: RunnerDeps) {
    this.#d = deps;
    this.#processors = deps.processors ?? ProcessorRegistry.builtIn(deps.config);
    this.#errors = new ThrottledLog(deps.log, { intervalMs: deps.logIntervalMs ?? 60_000 });
  }

  /** Resolves once no job runs in this process (tests wait on it). */
  async idle(): Promise<void> {
    while (this.#running.size > 0 || this.#expired.size > 0) {
      await Promise.all([...this.#running.values()].map((r) => r.done).concat([...this.#expired]));
    }
  }

  /** Jobs running in this process now. */
  get active(): number {
    return this.#running.size;
  }

  start(): void {
    if (this.#loop || this.#closing) return;
    this.#loop = this.#claimLoop();
    this.#heartbeat = setInterval(
      () => void this.#beat(),
      Math.max(100, Math.floor(this.#d.config.leaseMs / 3)),
    );
    this.#heartbeat.unref();
  }

  /** Looks for jobs now rather than at the next poll (a local upload just queued some). */
  wake(): void {
    // Remembered when the loop is busy claiming: it looks again instead of sleeping through a freed slot.
    this.#nudged = true;
    this.#wake?.();
  }

  async #claimLoop(): Promise<void> {
    const { concurrency, pollMs } = this.#d.config;
    const maxBackoff = Math.max(pollMs, this.#d.maxBackoffMs ?? 5_000);
    let failures = 0;
    while (!this.#closing) {
      this.#nudged = false;
      const free = this.#free(concurrency);
      let claimed = 0;
      if (free > 0) {
        try {
          const room = this.#room();
          const jobs = await this.#d.queue.claim(this.owner, free, room ? { room } : undefined);
          claimed = jobs.length;
          failures = 0;
          this.#errors.recovered('claim', 'claiming jobs works again');
          for (const job of jobs) this.#start(job);
        } catch (err) {
          // A locked or full database, an unreachable Redis: wait longer each time, log once per interval.
          failures++;
          this.#errors.failure('claim', err, 'claiming jobs failed');
        }
      }
      if (failures === 0 && ((claimed > 0 && claimed === free) || this.#nudged)) continue;
      const wait = failures === 0 ? pollMs : Math.min(maxBackoff, pollMs * 2 ** Math.min(failures, 20));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /**
   * Jobs to claim now: `concurrency` minus the processing jobs running. Webhook deliveries hold no thread, so a slow
   * receiver must not stall processing: up to {@link WEBHOOK_SLOTS} of them run beyond `concurrency`, and only
   * those past that count against it. A job done with its thread (storing its outputs, recording its outcome) does
   * not hold a slot either, so the thread takes the next job meanwhile; up to `concurrency` of them may be finishing
   * at once, those past that count against it.
   */
  #free(concurrency: number): number {
    let hooks = 0;
    let finishing = 0;
    for (const r of this.#running.values()) {
      if (r.job.kind === 'webhook') hooks++;
      else if (r.finishing) finishing++;
    }
    return (
      concurrency -
      (this.#running.size - hooks - finishing) -
      Math.max(0, hooks - WEBHOOK_SLOTS) -
      Math.max(0, finishing - concurrency)
    );
  }

  /** The job `id` of this run is done with its thread: its slot goes to the next job (see {@link #free}). */
  #computed(id: number, entry: Running): void {
    if (entry.finishing || this.#running.get(id) !== entry) return;
    entry.finishing = true;
    this.wake();
  }

  /** For each processor with a concurrency of its own, how many more of its jobs this process may run now. */
  #room(): Record<string, number> | undefined {
    const limits = this.#processors.limits();
    if (limits.size === 0) return undefined;
    const room = new Map(limits);
    for (const { job } of this.#running.values()) {
      const n = room.get(job.kind);
      if (n !== undefined) room.set(job.kind, n - 1);
    }
    return Object.fromEntries(room);
  }

  #start(job: Job): void {
    const controller = new AbortController();
    const entry: Running = {
      job,
      controller,
      done: Promise.resolve(),
      renewedAt: Date.now(),
      finishing: false,
    };
    // Held before it starts: a run may say it is done with its thread (or end) before `#run` first yields.
    this.#running.set(job.id, entry);
    entry.done = this.#run(job, controller.signal, () => this.#computed(job.id, entry)).finally(() => {
      // Not when its lease expired and this process claimed the job again since: that is another run.
      if (this.#running.get(job.id) === entry) this.#running.delete(job.id);
      this.wake();
    });
  }

  /** Runs a job and records its outcome; never rejects (the `done` promise of a job is not awaited at once). */
  async #run(job: Job, signal: AbortSignal, computed: () => void): Promise<void> {
    try {
      await this.#attempt(job, signal, computed);
    } catch (err) {
      // The outcome could not be recorded (a locked or full database): the lease expires and the job runs again.
      this.#errors.failure('record', err, `recording the outcome of job ${job.id} failed`);
    }
  }

  async #attempt(job: Job, signal: AbortSignal, computed: () => void): Promise<void> {
    const { queue, log, webhooks } = this.#d;
    const started = performance.now();
    const run =
      job.kind === 'webhook' ? this.#deliver.bind(this) : (this.#d.execute ?? this.#execute.bind(this));
    let result: unknown;
    try {
      result = await run(job, signal, computed);
    } catch (err) {
      await this.#failed(job, signal, err);
      return;
    }
    // Queued with the completion (one transaction with SQLite): a crash in between cannot lose the webhook. Should
    // they not be made (the catalog away), nothing is recorded and the job runs again once its lease expires.
    const hooks = await webhooks?.completed(job);
    const next = await this.#nextSteps(job);
    const then = next.length > 0 ? { ...hooks, next } : hooks;
    if (await queue.complete(job, this.owner, result, then)) {
      const ms = Math.round(performance.now() - started);
      this.#publish('job.completed', {
        jobId: job.id,
        fileId: job.fileId,
        kind: job.kind,
        attempts: job.attempts,
        ms,
      });
    } else log.warn({ job: job.id }, `job ${job.id} finished after its lease passed to another process`);
  }

  async #failed(job: Job, signal: AbortSignal, err: unknown): Promise<void> {
    const { queue, log } = this.#d;
    const e = err as { message?: string; code?: string };
    if (signal.aborted && signal.reason instanceof LeaseExpired) {
      // The queue gives the job to whoever claims it next (this process included): nothing is recorded here, so
      // the attempt cannot be counted twice, and the job completes once, by the run that holds its lease.
      log.info({ job: job.id }, `job ${job.id} stopped: its lease expired while it could not be renewed`);
      return;
    }
    if (signal.aborted && this.#closing) {
      await queue.release(job, this.owner);
      log.info({ job: job.id }, `job ${job.id} released back to the queue at shutdown`);
      return;
    }
    const code = typeof e.code === 'string' ? e.code : null;
    const message = e.message ?? String(err);
    const permanent =
      code !== null && (PERMANENT.has(code) || !!this.#processors.get(job.kind)?.permanent.includes(code));
    // `job.dead` goes with the failure that makes the job dead (the queue queues it only then).
    let then: FollowUps | undefined;
    if (permanent || job.attempts >= job.maxAttempts)
      then = await this.#d.webhooks?.failed(job, { code, message });
    const outcome = await queue.fail(
      job,
      this.owner,
      { message, ...(code ? { code } : {}) },
      permanent,
      then,
    );
    const missing = code === 'ERR_WEFT_FILES_NOT_FOUND' || code === 'ERR_WEFT_FILES_INPUT_MISSING';
    if (err instanceof FileGone || (missing && !(await this.#d.catalog.get(job.fileId)))) {
      // Deleting a file removes its jobs; one that was running (a locked BullMQ job cannot be removed) is removed
      // once its outcome is recorded.
      await queue.removeForFile(job.fileId);
      log.info(
        { job: job.id },
        `job ${job.id}: its file ${job.fileId} was deleted; its outputs and job are removed`,
      );
      return;
    }
    if (outcome === 'lost') return;
    log.warn({ job: job.id, err, outcome }, `job ${job.id} (${job.kind}) failed: ${e.message}`);
    this.#publish('job.failed', {
      jobId: job.id,
      fileId: job.fileId,
      kind: job.kind,
      attempts: job.attempts,
      error: e.message ?? String(err),
      code,
      dead: outcome === 'dead',
    });
  }

  /** Events are news, not records: a bus that cannot take one (Redis down) is logged, and the job goes on. */
  #publish<K extends EventType>(type: K, data: FilesEvents[K]): void {
    this.#d.bus.publish(type, data).catch((err) => this.#d.log.warn({ err }, `publishing ${type} failed`));
  }

  /** Sends a webhook job, here on the main thread: it waits on the network, and the pool's threads are for CPU. */
  async #deliver(job: Job, signal: AbortSignal): Promise<unknown> {
    if (!this.#d.webhooks) {
      throw new FilesError(
        'ERR_WEFT_FILES_WEBHOOK_URL',
        'This process sends no webhooks (neither FILES_WEBHOOK_URL nor FILES_WEBHOOK_ORIGINS, with a secret, is set)',
      );
    }
    return this.#d.webhooks.deliver(job, signal);
  }

  /**
   * Runs a processing job: its processor's module (a built-in or a configured plug-in) in a pool thread, with a
   * fresh folder for its outputs, which are stored once it is done.
   */
  async #execute(job: Job, signal: AbortSignal, computed: () => void): Promise<unknown> {
    const { catalog, storage, pool, config } = this.#d;
    const processor = this.#processors.get(job.kind);
    if (!processor) {
      // Queued by a process configured with this processor: another attempt may land on one that has it.
      throw new FilesError(
        'ERR_WEFT_FILES_PROCESSOR_UNKNOWN',
        `No processor "${job.kind}" is configured in this process (its jobs need it in "processors")`,
      );
    }
    const file = await catalog.get(job.fileId);
    if (!file) throw new FileGone(job.fileId);
    // Before the pool's first thread can load sharp (see processors/index.ts): a plug-in may use it too.
    await loadSharp();
    const source = await storage.localPath(originalKey(job.fileId));
    const options = { signal, timeout: this.#processors.timeout(job.kind) ?? config.jobTimeoutMs };
    try {
      return await this.#withOutputs(job, computed, async (outDir) => {
        const done = await pool.run(
          'runPlugin',
          [
            {
              kind: processor.kind,
              module: processor.module,
              file: { id: file.id, name: file.name, type: file.type, size: file.size, sha256: file.sha256 },
              input: source.path,
              outDir,
              options: processor.optionsFor({ csvDatabase: catalog.csvDatabase }),
              attempt: job.attempts,
              prefixed: !processor.builtIn,
            },
          ],
          options,
        );
        return {
          outputs: done.outputs,
          result: jobResult(
            processor,
            done.outputs.map((o) => o.name),
            done.result,
          ),
        };
      });
    } finally {
      await source.release();
    }
  }

  /** The jobs of the file's chains that run after this one (none when nothing is chained after its kind). */
  async #nextSteps(job: Job): Promise<FollowUp[]> {
    const { catalog, config } = this.#d;
    const processors = this.#processors;
    // The file's type is read only for a kind that has steps after it: every other completion reads nothing more.
    if (!processors.leads(job.kind)) return [];
    const file = await catalog.get(job.fileId);
    if (!file) return [];
    return processors.followers(job.kind, kindsFor(file.type, processors)).map((kind) => ({
      kind,
      fileId: job.fileId,
      payload: null,
      // Its own, else the service's (else as many as the step before it had).
      maxAttempts: processors.attempts(kind) ?? config.maxAttempts ?? job.maxAttempts,
      key: `${job.fileId}.${kind}`,
    }));
  }

  /**
   * Runs `make` with a fresh folder for the job's outputs, stores what it made (see {@link #storeOutputs}) and
   * removes the folder; resolves with the job's result. `computed` is called once `make` is done: storing waits on
   * the disk, not on the thread.
   */
  async #withOutputs(
    job: Job,
    computed: () => void,
    make: (outDir: string) => Promise<{ outputs: readonly MadeOutput[]; result: unknown }>,
  ): Promise<unknown> {
    const scratch = await this.#d.storage.scratch(`job-${job.id}`);
    try {
      const { outputs, result } = await make(scratch.dir);
      computed();
      await this.#storeOutputs(job.fileId, outputs);
      return result;
    } finally {
      await scratch.release();
    }
  }

  /**
   * Stores a job's outputs and records them, only if the file still exists (checked in the same transaction as the
   * write): a delete that came first removed the outputs before these were stored, so they are removed here.
   */
  async #storeOutputs(fileId: string, outputs: readonly MadeOutput[]): Promise<void> {
    const { storage, catalog } = this.#d;
    for (const o of outputs) await storage.putFile(derivedKey(fileId, o.name), o.path);
    // Without outputs, only whether the file is still there: a job may have made other things of it (a CSV table).
    const kept =
      outputs.length === 0
        ? (await catalog.get(fileId)) !== undefined
        : await catalog.setDerived(
            fileId,
            outputs.map((o) => ({
              name: o.name,
              type: o.type,
              size: o.size,
              width: o.width ?? null,
              height: o.height ?? null,
            })),
          );
    if (!kept) {
      // The delete came first and removed what the file had then: what this job made is removed here (the
      // catalog's delete also drops a CSV table made since).
      await storage.delete(derivedPrefix(fileId), { prefix: true });
      await catalog.delete(fileId);
      throw new FileGone(fileId);
    }
  }

  /**
   * Extends the leases of running jobs; a job whose lease another process took is aborted here. A job whose lease
   * could not be renewed before it ran out (the queue's backend is away) is aborted and no longer counted as held
   * by this process: the queue hands it out again once it is back.
   */
  async #beat(): Promise<void> {
    const sent = Date.now();
    const beating = [...this.#running.values()];
    try {
      const lost = new Set(
        await this.#d.queue.heartbeat(
          this.owner,
          beating.map((r) => r.job.id),
        ),
      );
      this.#errors.recovered('heartbeat', 'lease heartbeats work again');
      for (const r of beating) {
        if (lost.has(r.job.id)) r.controller.abort(new Error('lease lost'));
        else r.renewedAt = Math.max(r.renewedAt, sent);
      }
    } catch (err) {
      this.#errors.failure('heartbeat', err, 'lease heartbeat failed');
    }
    const now = Date.now();
    let expired = 0;
    for (const [id, r] of this.#running) {
      if (now - r.renewedAt < this.#d.config.leaseMs) continue;
      expired++;
      this.#running.delete(id);
      this.#expired.add(r.done);
      void r.done.finally(() => this.#expired.delete(r.done));
      r.controller.abort(new LeaseExpired(`the lease of job ${id} expired unrenewed`));
      this.#d.log.warn(
        { job: id },
        `job ${id}: its lease ran out while it could not be renewed; stopped here, it runs again once claimed`,
      );
    }
    // Slots freed: claim again (the claim loop backs off while the queue is away).
    if (expired > 0) this.wake();
  }

  /**
   * Stops claiming, waits for running jobs until `signal` aborts, then aborts the rest and releases them to the
   * queue. Idempotent.
   */
  close(signal?: AbortSignal): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true;
      this.wake();
      await this.#loop;
      const all = Promise.all([...this.#running.values()].map((r) => r.done).concat([...this.#expired]));
      if (signal && !signal.aborted) {
        await Promise.race([
          all,
          new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true })),
        ]);
      }
      for (const r of this.#running.values()) r.controller.abort(new Error('shutting down'));
      await all;
      clearInterval(this.#heartbeat);
    })();
    return this.#closed;
  }
}
