/**
 * The service's own metrics, registered in the process's `weftjs/metrics` registry next to its pool, lifecycle and
 * load shedder, and the `/metrics` route: the whole cluster's merged metrics when the supervisor serves them
 * (`WEFT_METRICS_URL`), else this process's.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Metrics } from 'weftjs/metrics';
import type { Catalog, TenantUsage } from './catalog/types.ts';
import type { FilesBus } from './events/bus.ts';
import type { OutboxRelay } from './outbox.ts';
import type { JobQueue } from './queue/types.ts';
import type { Backend, BackendGuard } from './resilience.ts';

/** Registers the service's metrics; returns the function that removes them. */
export function serviceMetrics(
  metrics: Metrics,
  bus: Pick<FilesBus, 'onPublished'>,
  queue: JobQueue,
  rateLimited: () => number = () => 0,
  catalog?: Pick<Catalog, 'usage'>,
): () => void {
  const registers = [metrics.registry];
  const uploads = new Counter({
    name: 'files_uploads_total',
    help: 'Uploads stored by this process',
    registers,
  });
  const bytes = new Counter({
    name: 'files_upload_bytes_total',
    help: 'Bytes stored by this process',
    registers,
  });
  const finished = new Counter({
    name: 'files_jobs_finished_total',
    help: 'Job attempts this process finished, by kind and outcome (completed, retrying, dead)',
    labelNames: ['kind', 'outcome'],
    registers,
  });
  const duration = new Histogram({
    name: 'files_job_duration_seconds',
    help: 'Run time of the jobs this process completed',
    labelNames: ['kind'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers,
  });
  new Gauge({
    name: 'files_jobs',
    help: 'Jobs by state in the shared queue (every process reports the same queue: use max(), not sum())',
    labelNames: ['state'],
    registers,
    async collect() {
      for (const [state, n] of Object.entries(await queue.counts())) this.set({ state }, n);
    },
  });
  new Counter({
    name: 'files_uploads_rate_limited_total',
    help: 'Uploads this process refused with 429: over FILES_UPLOADS_PER_MINUTE from one client address',
    registers,
    collect() {
      this.reset();
      this.inc(rateLimited());
    },
  });
  if (catalog) {
    // What each tenant stores (its quota's measure): read from the catalog at each scrape, one query for both.
    let read: Promise<TenantUsage[]> | undefined;
    const usage = () => {
      read ??= catalog.usage().finally(() => setImmediate(() => (read = undefined)));
      return read;
    };
    const label = (tenant: string | null) => ({ tenant: tenant ?? '(none)' });
    new Gauge({
      name: 'files_tenant_stored_bytes',
      help: 'Bytes of uploads each tenant stores, (none) for files of no tenant (shared catalog: use max(), not sum())',
      labelNames: ['tenant'],
      registers,
      async collect() {
        this.reset();
        for (const u of await usage()) this.set(label(u.tenant), u.bytes);
      },
    });
    new Gauge({
      name: 'files_tenant_files',
      help: 'Files each tenant stores, (none) for files of no tenant (shared catalog: use max(), not sum())',
      labelNames: ['tenant'],
      registers,
      async collect() {
        this.reset();
        for (const u of await usage()) this.set(label(u.tenant), u.files);
      },
    });
  }
  // This process's own events: the bus also delivers the others', which their processes count.
  const off = bus.onPublished((e) => {
    if (e.type === 'file.uploaded') {
      uploads.inc();
      bytes.inc(e.data.size);
    } else if (e.type === 'job.completed') {
      finished.inc({ kind: e.data.kind, outcome: 'completed' });
      duration.observe({ kind: e.data.kind }, e.data.ms / 1000);
    } else if (e.type === 'job.failed') {
      finished.inc({ kind: e.data.kind, outcome: e.data.dead ? 'dead' : 'retrying' });
    }
  });
  return () => {
    off();
    for (const name of ['files_uploads_total', 'files_upload_bytes_total', 'files_jobs_finished_total']) {
      metrics.registry.removeSingleMetric(name);
    }
    metrics.registry.removeSingleMetric('files_job_duration_seconds');
    metrics.registry.removeSingleMetric('files_jobs');
    metrics.registry.removeSingleMetric('files_uploads_rate_limited_total');
    if (catalog) {
      metrics.registry.removeSingleMetric('files_tenant_stored_bytes');
      metrics.registry.removeSingleMetric('files_tenant_files');
    }
  };
}

/**
 * Each backend's breaker: `weft_files_backend_up{backend}` (1 while its breaker is closed, 0 while open or
 * half-open) and the times it opened and went half-open. Returns the function that removes them.
 */
export function backendMetrics(
  metrics: Pick<Metrics, 'registry'>,
  guards: Record<Backend, BackendGuard>,
): () => void {
  const registers = [metrics.registry];
  const entries = Object.entries(guards) as [Backend, BackendGuard][];
  new Gauge({
    name: 'weft_files_backend_up',
    help: "1 while the backend's circuit breaker is closed (calls pass), 0 while it is open or half-open",
    labelNames: ['backend'],
    registers,
    collect() {
      for (const [backend, guard] of entries) this.set({ backend }, guard.up ? 1 : 0);
    },
  });
  for (const [name, help, read] of [
    [
      'weft_files_breaker_opens_total',
      'Times the backend circuit breaker opened',
      (g: BackendGuard) => g.opens,
    ],
    [
      'weft_files_breaker_half_opens_total',
      'Times the backend circuit breaker went half-open (let a probe through)',
      (g: BackendGuard) => g.halfOpens,
    ],
  ] as const) {
    new Counter({
      name,
      help,
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        for (const [backend, guard] of entries) this.inc({ backend }, read(guard));
      },
    });
  }
  return () => {
    for (const name of [
      'weft_files_backend_up',
      'weft_files_breaker_opens_total',
      'weft_files_breaker_half_opens_total',
    ]) {
      metrics.registry.removeSingleMetric(name);
    }
  };
}

/**
 * The outbox (with a remote queue): `weft_files_outbox_pending`, the uploads whose jobs wait for the queue (the
 * shared table, as the relay last counted it: every process reports it, use max()), and
 * `weft_files_outbox_relayed_total`, the rows this process's relay queued. Returns the function that removes them.
 */
export function outboxMetrics(
  metrics: Pick<Metrics, 'registry'>,
  relay: Pick<OutboxRelay, 'pending' | 'relayed'>,
): () => void {
  const registers = [metrics.registry];
  new Gauge({
    name: 'weft_files_outbox_pending',
    help: 'Uploads whose jobs wait in the outbox for the queue (the shared table: use max(), not sum())',
    registers,
    collect() {
      this.set(relay.pending);
    },
  });
  new Counter({
    name: 'weft_files_outbox_relayed_total',
    help: "Outbox rows this process's relay queued (or found queued) and deleted",
    registers,
    collect() {
      this.reset();
      this.inc(relay.relayed);
    },
  });
  return () => {
    metrics.registry.removeSingleMetric('weft_files_outbox_pending');
    metrics.registry.removeSingleMetric('weft_files_outbox_relayed_total');
  };
}

/**
 * `GET /metrics`: under a supervisor serving metrics, its merged view of every worker (fetched from
 * `WEFT_METRICS_URL`, so any worker answers for the whole machine); otherwise this process's registry.
 */
export function metricsRoute(metrics: Metrics, env: NodeJS.ProcessEnv = process.env) {
  return async (_request: FastifyRequest, reply: FastifyReply) => {
    const merged = env.WEFT_METRICS_URL;
    if (merged) {
      const res = await fetch(merged, { signal: AbortSignal.timeout(5_000) });
      reply.code(res.status).type(res.headers.get('content-type') ?? metrics.contentType);
      return reply.send(await res.text());
    }
    reply.type(metrics.contentType);
    return reply.send(await metrics.metrics());
  };
}
