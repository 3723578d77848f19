/**
 * The file service's parts wired together for one process: database, storage, queue, event bus, thread pool, job
 * runner and HTTP app. `server.ts` runs it under a lifecycle in each supervised worker; tests run it in-process.
 */
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import type { FastifyInstance } from 'fastify';
import type { Dashboard } from 'weft/dashboard';
import type { MetricsSnapshot } from 'weft/metrics';
import { Pool } from 'weft/pool';
import { Catalog } from './catalog.ts';
import type { FilesConfig } from './config.ts';
import { filesDashboard } from './dashboard.ts';
import { openDatabase } from './db.ts';
import { EventBus } from './events.ts';
import { type AppDeps, buildApp } from './http/app.ts';
import type { Logger } from './logger.ts';
import { type ProcessorTasks, tasksUrl } from './processors/index.ts';
import { SqliteQueue } from './queue/sqlite.ts';
import { JobRunner } from './runner.ts';
import { DiskStorage } from './storage/disk.ts';
import { parseStorageUrl, S3Storage } from './storage/s3.ts';
import type { Storage } from './storage/types.ts';

export interface Service {
  app: FastifyInstance;
  db: DatabaseSync;
  database: string;
  queue: SqliteQueue;
  catalog: Catalog;
  storage: Storage;
  bus: EventBus;
  pool: Pool<ProcessorTasks>;
  runner: JobRunner;
  /** The live dashboard at `/`; `close()` ends its streams (a draining server must not wait on them). */
  dashboard: Dashboard;
  /** Jobs waiting to run (queued or waiting for a retry), for load shedding and metrics. */
  queued(): number;
  /** Stops the runner (running jobs get until `signal` aborts), then the pool, the bus and the database. */
  close(signal?: AbortSignal): Promise<void>;
}

export interface ServiceOptions {
  log: Logger;
  /** Extra HTTP parts: load shedding, health and metrics handlers. */
  http?: Pick<AppDeps, 'shed' | 'health' | 'metrics'>;
  /** Start claiming jobs at once (default true). */
  runJobs?: boolean;
  /** The HTTP server's keep-alive timeout, ms (default 5 000, Node's). */
  keepAliveTimeout?: number;
  /** This process's `weft/metrics` snapshot, for the dashboard when no supervisor merges every worker's. */
  metrics?: () => MetricsSnapshot;
}

/**
 * @example
 * ```ts
 * const service = await createService(loadConfig(), { log: createLogger() });
 * await service.app.listen({ port: 3000 });
 * ```
 */
export async function createService(
  config: Readonly<FilesConfig>,
  options: ServiceOptions,
): Promise<Service> {
  const database = join(config.dataDir, 'files.db');
  const db = openDatabase(database);
  // Local disk by default; S3-compatible storage when STORAGE_URL says so (temp copies still go under dataDir).
  const storage: Storage = config.storageUrl
    ? new S3Storage(parseStorageUrl(config.storageUrl), join(config.dataDir, 'tmp'))
    : new DiskStorage(config.dataDir);
  await storage.init();
  const queue = new SqliteQueue(db, { leaseMs: config.leaseMs, retryDelayMs: config.retryDelayMs });
  const catalog = new Catalog(db, queue);
  const bus = new EventBus(db);
  const pool = new Pool<ProcessorTasks>({
    filename: tasksUrl,
    maxThreads: config.concurrency,
    // Threads read the process's budget to size libvips' own thread pool (processors/images.ts).
    env: { ...process.env, WEFT_THREADS: String(config.concurrency) },
    // sharp cannot be interrupted mid-image, and terminating a thread inside libvips can take the process down:
    // a cancelled image task is left to finish (its result is dropped) rather than killed.
    cancelGrace: config.jobTimeoutMs,
  });
  const runner = new JobRunner({ queue, catalog, storage, pool, bus, log: options.log, config, database });
  const dashboard = filesDashboard({ config, catalog, queue, bus, metrics: options.metrics });
  const countQueued = db.prepare("SELECT count(*) AS n FROM jobs WHERE state IN ('queued', 'retrying')");
  const app = await buildApp({
    keepAliveTimeout: options.keepAliveTimeout ?? 5_000,
    config,
    catalog,
    queue,
    storage,
    bus,
    log: options.log,
    runner,
    dashboard,
    ...options.http,
  });
  if (options.runJobs !== false) runner.start();
  let closed: Promise<void> | undefined;
  return {
    app,
    db,
    database,
    queue,
    catalog,
    storage,
    bus,
    pool,
    runner,
    dashboard,
    queued: () => Number((countQueued.get() as { n: number }).n),
    close(signal) {
      closed ??= (async () => {
        await dashboard.close();
        await runner.close(signal);
        await pool.close();
        bus.close();
        storage.close?.();
        db.close();
      })();
      return closed;
    },
  };
}
