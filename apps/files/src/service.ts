/**
 * The file service's parts wired together for one process: database, storage, queue, event bus, thread pool, job
 * runner and HTTP app. Each backend is embedded (SQLite, local disk) unless the configuration names a remote one:
 * `QUEUE_URL` (BullMQ on Redis, with events over the same Redis), `DATABASE_URL` (PostgreSQL), `STORAGE_URL` (S3). `server.ts` runs it under a lifecycle in each supervised worker; tests run it in-process.
 */
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import type { FastifyInstance } from 'fastify';
import type { Dashboard } from 'weftjs/dashboard';
import type { MetricsSnapshot } from 'weftjs/metrics';
import { Pool } from 'weftjs/pool';
import { SqliteCatalog } from './catalog/sqlite.ts';
import type { Catalog } from './catalog/types.ts';
import { type FilesConfig, isAmqp } from './config.ts';
import { filesDashboard } from './dashboard.ts';
import { openDatabase, retryBusy, walSync } from './db.ts';
import { type FilesBus, openFilesBus } from './events/bus.ts';
import { type AppDeps, buildApp } from './http/app.ts';
import { linkSecret } from './http/links.ts';
import type { TusSetup } from './http/tus.ts';
import { ThrottledLog } from './log-throttle.ts';
import type { Logger } from './logger.ts';
import { defaultNodeName, localProcesses, NodeRegistry, sendsHeartbeats } from './nodes.ts';
import { OutboxRelay } from './outbox.ts';
import { type ProcessorTasks, tasksUrl } from './processors/index.ts';
import { ProcessorRegistry } from './processors/registry.ts';
import { SqliteQueue } from './queue/sqlite.ts';
import type { Job, JobKind, JobQueue, JobStore } from './queue/types.ts';
import {
  BACKENDS,
  type Backend,
  type BackendGuard,
  BUS_CALLS,
  catalogCalls,
  guardsFor,
  PG_STORE_CALLS,
  QUEUE_CALLS,
  RABBIT_CALLS,
  resilient,
  STORAGE_CALLS,
} from './resilience.ts';
import { JobRunner } from './runner.ts';
import { DiskStorage } from './storage/disk.ts';
import { reportNoSpace } from './storage/no-space.ts';
import type { Storage } from './storage/types.ts';
import { TokenStore } from './tokens.ts';
import type { LeaseBackend } from './tus-lock.ts';
import { stalledDead, Webhooks } from './webhooks.ts';

export interface Service {
  app: FastifyInstance;
  /** The embedded SQLite database, when something uses it (not when the queue, the catalog and events are remote). */
  db: DatabaseSync | undefined;
  queue: JobQueue;
  catalog: Catalog;
  storage: Storage;
  bus: FilesBus;
  /** The other nodes, heard on the bus, when the service spans machines (`QUEUE_URL`). */
  registry: NodeRegistry | undefined;
  pool: Pool<ProcessorTasks>;
  runner: JobRunner;
  /** The live dashboard at `/`; `close()` ends its streams (a draining server must not wait on them). */
  dashboard: Dashboard;
  /** Each backend's guard: its breaker's state and counts (`/metrics`, the dashboard). */
  guards: Record<Backend, BackendGuard>;
  /**
   * Each backend's readiness check: fails at once while its breaker is open, else asks the backend (under its
   * deadline). `server.ts` adds them to the lifecycle's readiness probe.
   */
  checks: Record<Backend, () => Promise<void>>;
  /**
   * Whether uploads need the backend now: a remote queue is not critical, since its outbox keeps uploads (and their
   * jobs) durable while it is away. `server.ts` adds the other checks as non-critical readiness checks.
   */
  critical: Record<Backend, boolean>;
  /** The outbox relay (with a remote queue): queues the jobs of uploads made while the queue was away. */
  relay: OutboxRelay | undefined;
  /** Uploads this process refused with 429 (over `FILES_UPLOADS_PER_MINUTE`). */
  rateLimited(): number;
  /** Jobs waiting to run (queued or waiting for a retry), for load shedding; a remote queue's is refreshed each second. */
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
  /** This process's `weftjs/metrics` snapshot, for the dashboard when no supervisor merges every worker's. */
  metrics?: () => MetricsSnapshot;
  /** Wraps the storage adapter (tests inject faults: a full disk, a slow write). */
  storage?: (storage: Storage) => Storage;
  /** Start the outbox relay at once (default true; only with a remote queue). */
  relay?: boolean;
  /** Options of the outbox relay (tests shorten its lease and intervals). */
  relayOptions?: { intervalMs?: number; idleMs?: number; leaseMs?: number; batch?: number };
}

/** The queue, catalog and event bus the configuration asks for; what is not remote lives in the SQLite file. */
async function openBackends(
  config: Readonly<FilesConfig>,
  closers: (() => unknown)[],
  guards: Record<Backend, BackendGuard>,
  log: Logger,
  processors: ProcessorRegistry,
) {
  // A plug-in's own `maxAttempts`, where it sets one, for the jobs of its kind.
  const attempts = (kind: JobKind) => processors.attempts(kind);
  // Redis spans machines; RabbitMQ delivers jobs whose state is in PostgreSQL with DATABASE_URL, else in this
  // machine's SQLite file (queue/rabbitmq.ts).
  const redisUrl = redisQueueUrl(config);
  const needsSqlite = !config.queueUrl || !config.databaseUrl;
  const path = join(config.dataDir, 'files.db');
  const db = needsSqlite ? openDatabase(path) : undefined;
  // Commits are not fsynced by SQLite (synchronous = NORMAL); writes whose outcome is reported await this instead.
  const sync = walSync(path);
  if (db) closers.unshift(() => db.close());
  // Every SQLite adapter waits out a locked database asynchronously, up to dbBusyTimeout (db.ts).
  const busy = { timeoutMs: config.dbBusyTimeout };
  let queue: JobQueue;
  let bus: FilesBus;
  // The adapters themselves, for the readiness checks and probes that run through their guard (not twice).
  const raw: { queue?: JobQueue; catalog?: Catalog } = {};
  if (redisUrl) {
    // The remote adapters are loaded only when configured: BullMQ with ioredis, pg and the AWS SDK cost a process
    // that does not use them some 30 MB of memory and their load time at every start.
    const { BullQueue } = await import('./queue/bullmq.ts');
    const bull = await BullQueue.open({
      url: redisUrl,
      leaseMs: config.leaseMs,
      retryDelayMs: config.retryDelayMs,
      timeoutMs: config.queueTimeout,
      attempts,
    });
    closers.unshift(() => bull.close());
    raw.queue = bull;
    // Redis, PostgreSQL and S3 are wrapped once here, at their ports: deadline, retries where safe, breaker.
    queue = resilient<JobQueue>(bull, guards.queue, QUEUE_CALLS);
    // Events go over the queue's Redis, so every node's dashboard sees every node's jobs.
    const redisBus = await openFilesBus({ queueUrl: redisUrl, timeoutMs: config.queueTimeout, log });
    closers.unshift(() => redisBus.close());
    // The same Redis as the queue: the same breaker.
    bus = resilient<FilesBus>(redisBus, guards.queue, BUS_CALLS);
  } else {
    const store = (announce?: (jobs: readonly Job[]) => void) =>
      retryBusy(
        new SqliteQueue(db!, {
          leaseMs: config.leaseMs,
          retryDelayMs: config.retryDelayMs,
          sync,
          attempts,
          // A job whose process died on its last attempt is dead-lettered by a claim: its `job.dead` webhook with it.
          stalledDead: (job: Job) => stalledDead(config, job),
          ...(announce ? { announce } : {}),
        }),
        busy,
      );
    if (config.queueUrl) {
      // RabbitMQ delivers the jobs of the shared PostgreSQL database, or of this machine's SQLite file.
      const { RabbitQueue } = await import('./queue/rabbitmq.ts');
      let pgStore: JobStore | undefined;
      let tell: (jobs: readonly Job[]) => void = () => {};
      if (config.databaseUrl) {
        const { PgJobStore } = await import('./queue/pg-store.ts');
        const opened = await PgJobStore.open(config.databaseUrl, {
          leaseMs: config.leaseMs,
          retryDelayMs: config.retryDelayMs,
          attempts,
          stalledDead: (job: Job) => stalledDead(config, job),
          queryTimeoutMs: config.databaseTimeout,
          announce: (jobs) => tell(jobs),
        });
        closers.unshift(() => opened.close());
        // PostgreSQL's outage is the database's, also when a claim or an outcome meets it (see PG_STORE_CALLS).
        pgStore = resilient<JobStore>(opened, guards.database, PG_STORE_CALLS);
      }
      const rabbit = await RabbitQueue.open({
        url: config.queueUrl,
        retryDelayMs: config.retryDelayMs,
        timeoutMs: config.queueTimeout,
        store: (announce) => {
          if (!pgStore) return store(announce);
          tell = announce;
          return pgStore;
        },
      });
      closers.unshift(() => rabbit.close());
      raw.queue = rabbit;
      queue = resilient<JobQueue>(rabbit, guards.queue, RABBIT_CALLS);
    } else {
      queue = store();
      raw.queue = queue;
    }
    // Events go to every worker of this machine's `weft start` (this process alone when nothing supervises it).
    const clusterBus = await openFilesBus({ log });
    closers.unshift(() => clusterBus.close());
    bus = clusterBus;
  }
  let catalog: Catalog;
  // With a remote queue, uploads go through the outbox: the row is the upload's own while it queues its jobs
  // directly (up to the queue's deadline), then the relay's.
  const outbox = config.queueUrl ? { outboxLeaseMs: config.queueTimeout + 1_000 } : {};
  if (config.databaseUrl) {
    const { PgCatalog } = await import('./catalog/pg.ts');
    const pg = await PgCatalog.open(config.databaseUrl, queue, {
      queryTimeoutMs: config.databaseTimeout,
      ...outbox,
    });
    closers.unshift(() => pg.close());
    raw.catalog = pg;
    // recordUpload also adds the jobs to the queue, under the queue's own deadline.
    catalog = resilient<Catalog>(
      pg,
      guards.database,
      catalogCalls(config.databaseTimeout + config.queueTimeout),
    );
  } else {
    catalog = retryBusy(new SqliteCatalog(db!, queue, path, { ...outbox, sync }), busy);
    raw.catalog = catalog;
  }
  return { db, queue, bus, catalog, raw: raw as Required<typeof raw> };
}

/**
 * The tus endpoint's parts: the store of unfinished uploads (files under `dataDir/uploads`, or the bucket of
 * `STORAGE_URL` under `<prefix>uploads/`, with their metadata cached in Redis or under `dataDir`) and a lock every
 * process sees (Redis with a remote queue, else the SQLite file all processes of this machine share).
 */
async function openTus(
  config: Readonly<FilesConfig>,
  db: DatabaseSync | undefined,
  closers: (() => unknown)[],
  log: Logger,
): Promise<TusSetup> {
  const [{ LeaseLocker, RedisLeases, SqliteLeases }, { FileKvStore, IoRedisKvStore }] = await Promise.all([
    import('./tus-lock.ts'),
    import('@tus/utils'),
  ]);
  let backend: LeaseBackend;
  let redis: import('ioredis').Redis | undefined;
  let redisPrefix = '';
  const redisUrl = redisQueueUrl(config);
  if (redisUrl) {
    const { queueRedis } = await import('./queue/bullmq.ts');
    const r = queueRedis(redisUrl, { lazyConnect: true });
    closers.unshift(r.close);
    redis = r.client;
    redisPrefix = `${r.keyPrefix}tus:`;
    backend = new RedisLeases(redis, `${redisPrefix}lock:`);
  } else if (config.queueUrl && config.databaseUrl) {
    // RabbitMQ and PostgreSQL, no Redis: the nodes share the locks in the database.
    const [{ PgLeases }, { default: pg }] = await Promise.all([import('./tus-lock-pg.ts'), import('pg')]);
    const pool = new pg.Pool({
      connectionString: config.databaseUrl,
      max: 2,
      connectionTimeoutMillis: config.databaseTimeout,
      query_timeout: config.databaseTimeout,
      application_name: 'weft-files-tus',
    });
    pool.on('error', () => {});
    closers.unshift(() => pool.end());
    backend = new PgLeases(pool);
  } else {
    backend = retryBusy(new SqliteLeases(db!), { timeoutMs: config.dbBusyTimeout });
  }
  const locker = new LeaseLocker(backend, {
    onError: (err) => log.warn({ err }, 'renewing or releasing a tus upload lock failed'),
  });
  const expirationPeriodInMilliseconds = config.tusExpiry;
  const common = { locker, tmpDir: join(config.dataDir, 'tmp'), expiryMs: config.tusExpiry };
  if (config.storageUrl) {
    const [{ parseStorageUrl }, { S3Store }] = await Promise.all([
      import('./storage/s3.ts'),
      import('@tus/s3-store'),
    ]);
    const { bucket, prefix, client } = parseStorageUrl(config.storageUrl);
    const datastore = new S3Store({
      partSize: 8 * 1024 * 1024,
      // Object tags are not implemented by every S3-compatible server; expiry goes by the upload's creation date.
      useTags: false,
      expirationPeriodInMilliseconds,
      // Upload metadata cached where every process (and, with Redis, every node) sees the same.
      cache: redis
        ? new IoRedisKvStore(redis, `${redisPrefix}meta:`)
        : new FileKvStore(join(config.dataDir, 'uploads-meta')),
      s3ClientConfig: { bucket, ...client },
    });
    return { ...common, datastore, storePrefix: `${prefix}uploads/` };
  }
  const { FileStore } = await import('@tus/file-store');
  return {
    ...common,
    datastore: new FileStore({ directory: join(config.dataDir, 'uploads'), expirationPeriodInMilliseconds }),
    storePrefix: '',
  };
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
  // The plug-ins first: a module that cannot be loaded stops the start before anything is opened.
  const processors = await ProcessorRegistry.load(config);
  // Closed in the reverse order of opening: whatever opened before a failure is closed again.
  const closers: (() => unknown)[] = [];
  const closeAll = async () => {
    for (const close of closers.splice(0)) {
      try {
        await close();
      } catch (err) {
        options.log.warn({ err }, 'closing a backend failed');
      }
    }
  };
  let backends: Awaited<ReturnType<typeof openBackends>>;
  let tus: TusSetup;
  let storage: Storage;
  let rawStorage: Storage;
  const guards = guardsFor(config);
  closers.push(() => {
    for (const guard of Object.values(guards)) guard.close();
  });
  try {
    backends = await openBackends(config, closers, guards, options.log, processors);
    // Local disk by default; S3-compatible storage when STORAGE_URL says so (temp copies still go under dataDir).
    let adapter: Storage;
    if (config.storageUrl) {
      const { parseStorageUrl, S3Storage } = await import('./storage/s3.ts');
      adapter = new S3Storage(parseStorageUrl(config.storageUrl), join(config.dataDir, 'tmp'), {
        stallMs: config.storageTimeout,
      });
    } else adapter = new DiskStorage(config.dataDir);
    // A full disk is an answer (507), not an outage: reportNoSpace turns it into one inside the storage's guard.
    rawStorage = reportNoSpace(options.storage ? options.storage(adapter) : adapter);
    storage = resilient<Storage>(rawStorage, guards.storage, STORAGE_CALLS);
    await storage.init();
    closers.unshift(() => storage.close?.());
    tus = await openTus(config, backends.db, closers, options.log);
  } catch (err) {
    await closeAll();
    throw err;
  }
  const { db, queue, bus, catalog, raw } = backends;
  // Checked through the guards (their deadline and breaker) even when the adapter is embedded and not wrapped.
  const probes: Record<Backend, () => Promise<unknown>> = {
    queue: () => raw.queue.waiting(),
    database: () => raw.catalog.ping(),
    storage: () => rawStorage.stat('weft-probe'),
  };
  const checks = {} as Record<Backend, () => Promise<void>>;
  for (const backend of BACKENDS) {
    checks[backend] = guards[backend].check(probes[backend]);
    // An open breaker is probed in the background, so it closes soon after the backend returns, with no traffic.
    guards[backend].probe(probes[backend]);
  }
  // An upload-only node (concurrency 0) starts no thread: the pool's threads start with the first task.
  const threads = Math.max(1, config.concurrency);
  const pool = new Pool<ProcessorTasks>({
    filename: tasksUrl,
    maxThreads: threads,
    // Threads read the process's budget to size libvips' own thread pool (processors/images.ts).
    env: { ...process.env, WEFT_THREADS: String(threads) },
    // sharp cannot be interrupted mid-image, and terminating a thread inside libvips can take the process down:
    // a cancelled image task is left to finish (its result is dropped) rather than killed.
    cancelGrace: config.jobTimeoutMs,
  });
  // Without a webhook configured, none is queued.
  const webhooks = Webhooks.fromConfig(config, catalog);
  const runner = new JobRunner({
    queue,
    catalog,
    storage,
    pool,
    bus,
    log: options.log,
    config,
    webhooks,
    processors,
  });
  const offReady = queue.onReady?.(() => runner.wake());
  // Every process relays: whichever is up when the queue returns queues what the others left in the outbox.
  const relay = config.queueUrl
    ? new OutboxRelay({
        catalog,
        queue,
        guard: guards.queue,
        log: options.log,
        owner: runner.owner,
        onRelayed: () => runner.wake(),
        ...options.relayOptions,
      })
    : undefined;
  // Across machines, each node tells the others what its processes are, for their dashboards.
  const nodeView = redisQueueUrl(config)
    ? localProcesses({ title: 'files', metrics: options.metrics })
    : undefined;
  const registry = nodeView
    ? new NodeRegistry({
        bus,
        node: config.nodeName ?? defaultNodeName(),
        view: () => nodeView.read([]),
        sends: sendsHeartbeats(),
        log: options.log,
      })
    : undefined;
  registry?.start();
  // Signed links' secret (http/links.ts): the API's links and, with scoped tokens, the dashboard's thumbnails.
  const secret = linkSecret(config.linkSecret, join(config.dataDir, 'link.secret'));
  const dashboard = filesDashboard({
    linkSecret: secret,
    config,
    catalog,
    queue,
    bus,
    registry,
    metrics: options.metrics,
    backends: () => BACKENDS.map((name) => ({ name, state: guards[name].state, up: guards[name].up })),
    webhooks: webhooks !== undefined,
  });
  // The embedded queue is counted at once; a remote one is read each second (shedding must not wait on Redis).
  let waiting = await queue.waiting();
  const sqlite = queue instanceof SqliteQueue ? queue : undefined;
  // Read every second: while Redis is away that fails every second, so it is logged once a minute.
  const depthErrors = new ThrottledLog(options.log);
  const refresh = sqlite
    ? undefined
    : setInterval(() => {
        queue.waiting().then(
          (n) => {
            waiting = n;
            depthErrors.recovered('depth', 'reading the queue depth works again');
          },
          (err) => depthErrors.failure('depth', err, 'reading the queue depth failed'),
        );
      }, 1_000).unref();
  // Uploads a minute per client: on the queue's Redis across nodes, else in the supervisor's shared counters.
  let rateLimited = 0;
  let limitRedis: { client: unknown; nameSpace: string } | undefined;
  const limitUrl = redisQueueUrl(config);
  if (config.uploadsPerMinute > 0 && limitUrl) {
    // A check that fails is logged and lets the upload through (http/rate-limit.ts).
    const { queueRedis } = await import('./queue/bullmq.ts');
    const r = queueRedis(limitUrl, { commandTimeout: config.queueTimeout });
    closers.unshift(r.close);
    limitRedis = { client: r.client, nameSpace: `${r.keyPrefix}rate:` };
  }
  // Scoped tokens: read now (a missing or invalid file fails the start), again whenever the file changes.
  const tokens = config.tokensFile
    ? new TokenStore(config.tokensFile, (err) =>
        options.log.error(
          { err },
          `FILES_TOKENS_FILE could not be read again: keeping the tokens read before (${err.message})`,
        ),
      )
    : undefined;
  const app = await buildApp({
    keepAliveTimeout: options.keepAliveTimeout ?? 5_000,
    ...(tokens ? { tokens } : {}),
    linkSecret: secret,
    ...(config.uploadsPerMinute > 0
      ? {
          uploadLimit: {
            perMinute: config.uploadsPerMinute,
            redis: limitRedis,
            onRefused: () => {
              rateLimited++;
            },
          },
        }
      : {}),
    config,
    catalog,
    queue,
    storage,
    bus,
    log: options.log,
    runner,
    relay,
    dashboard,
    tus,
    resize: { pool, limitInputPixels: config.limitInputPixels, timeoutMs: config.jobTimeoutMs },
    processors,
    ...options.http,
  });
  if (options.runJobs !== false && config.concurrency > 0) runner.start();
  if (options.relay !== false) relay?.start();
  let closed: Promise<void> | undefined;
  return {
    app,
    db,
    queue,
    catalog,
    storage,
    bus,
    registry,
    pool,
    runner,
    dashboard,
    guards,
    checks,
    critical: { queue: !relay, database: true, storage: true },
    relay,
    rateLimited: () => rateLimited,
    queued: () => {
      // Jobs waiting in the outbox count too (one row per upload): while Redis is away they are the backlog.
      if (!sqlite) return waiting + (relay?.pending ?? 0);
      try {
        waiting = sqlite.waitingSync();
      } catch {} // a locked or failing database: shedding goes on with the last count
      return waiting;
    },
    close(signal) {
      closed ??= (async () => {
        clearInterval(refresh);
        offReady?.();
        await dashboard.close();
        await registry?.close();
        nodeView?.close();
        await relay?.close();
        await runner.close(signal);
        await pool.close();
        await closeAll();
      })();
      return closed;
    },
  };
}

/** `queueUrl` when it is Redis, which the service also uses across machines (events, upload locks, rate limits). */
function redisQueueUrl(config: Readonly<FilesConfig>): string | undefined {
  return config.queueUrl !== undefined && !isAmqp(config.queueUrl) ? config.queueUrl : undefined;
}
