/**
 * The file service's live dashboard: `weftjs/dashboard`'s page at `/`, with the cluster's processes and pools (the
 * supervisor's merged metrics, or this process alone), job counts, the latest dead jobs, recent uploads and the
 * events since the last snapshot. One snapshot a second, shared by every open page, made only while one is open.
 */
import { Agent, get } from 'node:http';
import type { FastifyInstance } from 'fastify';
import {
  type BackendView,
  type ClusterInput,
  clusterView,
  createDashboard,
  DASHBOARD_PATHS,
  type Dashboard,
  type DashboardSnapshot,
  type EventView,
  type FailureView,
  type FileView,
  processView,
  type WebhooksView,
} from 'weftjs/dashboard';
import type { MetricsSnapshot } from 'weftjs/metrics';
import type { Catalog, FileRecord } from './catalog.ts';
import type { FilesConfig } from './config.ts';
import type { EventBus, FilesEvent } from './events.ts';
import type { Job, JobCounts, JobQueue } from './queue/types.ts';
import type { WebhookPayload } from './webhooks.ts';

export interface FilesDashboardDeps {
  config: Pick<FilesConfig, 'token' | 'maxUpload'> &
    Partial<Pick<FilesConfig, 'contentOrigin' | 'webhookUrl'>>;
  catalog: Pick<Catalog, 'list' | 'get' | 'derived'>;
  queue: JobQueue;
  bus: EventBus;
  /** This process's `weftjs/metrics` snapshot, shown when no supervisor serves merged metrics. */
  metrics?: (() => MetricsSnapshot) | undefined;
  /** Each backend's breaker state, shown in the Files section (a backend not `up` cannot take uploads). */
  backends?: () => BackendView[];
  /** Webhooks are configured: the page shows their deliveries. */
  webhooks?: boolean;
  /** Where `WEFT_METRICS_URL` (the supervisor's merged metrics) is read. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
}

const RECENT = 12;
const FAILURES = 10;
/** Events kept between two snapshots; a burst beyond this shows its first ones (counts stay exact). */
const MAX_EVENTS = 100;
/** Lists with nothing in flight are read again at least this often, for changes no event announces. */
const LISTS_MAX_AGE_MS = 10_000;
const FINAL = new Set(['completed', 'dead', 'stored']);

/** GETs JSON over a kept-alive connection: half the CPU of `fetch()` for a request made every second. */
function getJson(url: string, agent: Agent, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent, timeout: ms }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('error', reject);
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        try {
          resolve(JSON.parse(body));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${ms} ms`)));
    req.on('error', reject);
  });
}

function describe(e: FilesEvent): EventView {
  let text: string;
  if (e.type === 'file.uploaded') text = `uploaded ${e.data.name} (${e.data.type}, ${e.data.size} bytes)`;
  else if (e.type === 'file.deleted') text = `deleted file ${e.data.fileId}`;
  else if (e.type === 'job.completed')
    text = `job #${e.data.jobId} (${e.data.kind}) completed in ${e.data.ms} ms`;
  else {
    const then = e.data.dead ? 'dead-lettered' : 'will be retried';
    text = `job #${e.data.jobId} (${e.data.kind}) failed, ${then}: ${e.data.error}`;
  }
  return { id: e.id, type: e.type, at: e.at, text };
}

/** The state of a file's jobs taken together (deliveries about it aside): the worst one wins, `completed` when all are. */
function fileState(jobs: Job[]): string {
  if (jobs.length === 0) return 'stored';
  for (const s of ['dead', 'active', 'retrying', 'queued'] as const)
    if (jobs.some((j) => j.state === s)) return s;
  return 'completed';
}

/** Deliveries by state, and the latest that failed (dead, or waiting for a retry) with their last error. */
async function webhookView(queue: JobQueue, webhookUrl: string | undefined): Promise<WebhooksView> {
  const [counts, dead, retrying] = await Promise.all([
    queue.counts({ kind: 'webhook' }),
    queue.list({ kind: 'webhook', state: 'dead', limit: FAILURES }),
    queue.list({ kind: 'webhook', state: 'retrying', limit: FAILURES }),
  ]);
  // Only the origin of a URL is shown: its path or query may hold a token.
  const where = (p: WebhookPayload | null) =>
    p?.target === 'config' && webhookUrl ? new URL(webhookUrl).origin : "the upload's own URL";
  const failures = [...dead, ...retrying]
    .sort((a, b) => b.updatedAt - a.updatedAt)
    .slice(0, FAILURES)
    .map((j) => {
      const payload = j.payload as WebhookPayload | null;
      return {
        id: j.id,
        label: `${payload?.event?.type ?? 'webhook'} → ${where(payload)}`,
        kind: j.kind,
        error: j.lastError ?? '',
        code: j.errorCode,
        attempts: j.attempts,
        at: j.updatedAt,
        state: j.state,
      };
    });
  return { counts, failures };
}

/**
 * @example
 * ```ts
 * const dashboard = filesDashboard({ config, catalog, queue, bus });
 * routeDashboard(app, dashboard);
 * ```
 */
export function filesDashboard(deps: FilesDashboardDeps): Dashboard {
  const { catalog, queue, bus, config } = deps;
  const env = deps.env ?? process.env;
  // The supervisor's endpoint is `…/metrics`; its JSON form is next to it. `light`: each worker's snapshot only,
  // without the metric families the page does not show (a fraction of the scrape's cost, every second).
  const merged = env.WEFT_METRICS_URL?.replace(/\/metrics$/, '/metrics.json?light');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const auth = config.token !== undefined;
  let pending: FilesEvent[] = [];
  let off: (() => void) | undefined;
  let lists: { at: number; dead: number; files: FileView[]; failures: FailureView[] } | undefined;

  async function processes(warnings: string[]) {
    if (merged) {
      try {
        return clusterView((await getJson(merged, agent, 2_000)) as ClusterInput, 'files');
      } catch (err) {
        warnings.push(
          `The supervisor's merged metrics did not answer (${(err as Error).message}): this process only.`,
        );
      }
    }
    return processView('files', deps.metrics?.());
  }

  async function file(f: FileRecord): Promise<FileView> {
    const jobs = await queue.list({ fileId: f.id, limit: 10 });
    const state = fileState(jobs);
    const thumb = (await catalog.derived(f.id)).some((d) => d.name === 'thumbnail.webp');
    const done = state === 'completed' ? Math.max(...jobs.map((j) => j.finishedAt ?? 0)) : 0;
    return {
      id: f.id,
      name: f.name,
      type: f.type,
      size: f.size,
      createdAt: f.createdAt,
      state,
      url: `/files/${f.id}`,
      ...(thumb ? { thumbnail: `${config.contentOrigin ?? ''}/files/${f.id}/derived/thumbnail.webp` } : {}),
      ...(done > 0 ? { processMs: done - f.createdAt } : {}),
    };
  }

  async function readLists(counts: JobCounts, changed: boolean) {
    const fresh =
      lists &&
      !changed &&
      lists.dead === counts.dead &&
      Date.now() - lists.at < LISTS_MAX_AGE_MS &&
      lists.files.every((f) => FINAL.has(f.state));
    if (fresh) return lists!;
    // Awaited even where the SQLite catalog answers at once: a networked one (PostgreSQL) will not.
    const files = await Promise.all((await catalog.list(RECENT)).map(file));
    const dead = await queue.list({ state: 'dead', limit: FAILURES });
    const failures = await Promise.all(
      dead.map(async (j) => ({
        id: j.id,
        label: (await catalog.get(j.fileId))?.name ?? j.fileId,
        kind: j.kind,
        error: j.lastError ?? '',
        code: j.errorCode,
        attempts: j.attempts,
        at: j.finishedAt ?? j.updatedAt,
      })),
    );
    lists = { at: Date.now(), dead: counts.dead, files, failures };
    return lists;
  }

  async function snapshot(): Promise<DashboardSnapshot> {
    const events = pending;
    pending = [];
    const warnings: string[] = [];
    const base = await processes(warnings);
    // A backend that is away (its breaker open) must not blank the page that shows it: the last lists are kept.
    let counts: JobCounts = { queued: 0, active: 0, retrying: 0, completed: 0, dead: 0 };
    let read = lists ?? { files: [], failures: [] };
    let webhooks: WebhooksView | undefined;
    try {
      counts = await queue.counts();
      read = await readLists(counts, events.length > 0);
      if (deps.webhooks) webhooks = await webhookView(queue, config.webhookUrl);
    } catch (err) {
      warnings.push(`Jobs and files could not be read: ${(err as Error).message}`);
    }
    const { files, failures } = read;
    return {
      ...base,
      jobs: { counts, failures, retry: { path: '/jobs/:id/retry', auth } },
      ...(webhooks ? { webhooks } : {}),
      files: {
        upload: { path: '/files', auth, maxBytes: config.maxUpload },
        recent: files,
        ...(deps.backends ? { backends: deps.backends() } : {}),
      },
      events: events.map(describe),
      ...(warnings.length ? { warnings } : {}),
    };
  }

  return createDashboard({
    snapshot,
    // Thumbnails come from the content origin when there is one.
    imageOrigins: config.contentOrigin ? [config.contentOrigin] : [],
    // The bus reads the other processes' events only while someone listens: only while a page is open.
    onActive: () => {
      off ??= bus.on('*', (e) => {
        if (pending.length < MAX_EVENTS) pending.push(e);
      });
    },
    onIdle: () => {
      off?.();
      off = undefined;
      pending = [];
      agent.destroy();
    },
  });
}

/** Serves the dashboard's paths from fastify, and ends its streams when the app closes (else close() waits on them). */
export function routeDashboard(app: FastifyInstance, dashboard: Dashboard): void {
  for (const path of DASHBOARD_PATHS) {
    app.get(path, (request, reply) => {
      reply.hijack();
      dashboard.handle(request.raw, reply.raw);
    });
  }
  app.addHook('preClose', async () => {
    await dashboard.close();
  });
}
