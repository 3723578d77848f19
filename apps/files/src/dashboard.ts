/**
 * The file service's live dashboard: `weftjs/dashboard`'s page at `/`, with the cluster's processes and pools (the
 * supervisor's merged metrics, or this process alone), job counts, the latest dead jobs, recent uploads and the
 * events since the last snapshot. One snapshot a second, shared by every open page, made only while one is open.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import {
  type BackendView,
  createDashboard,
  DASHBOARD_PATHS,
  type Dashboard,
  type DashboardSnapshot,
  type EventView,
  type FailureView,
  type FileView,
  type TenantView,
  type WebhooksView,
} from 'weftjs/dashboard';
import type { MetricsSnapshot } from 'weftjs/metrics';
import type { Catalog, FileRecord } from './catalog/types.ts';
import type { FilesConfig } from './config.ts';
import type { FilesBus } from './events/bus.ts';
import type { FilesEvent } from './events/types.ts';
import { viewerOf } from './http/auth.ts';
import { listScope } from './http/files.ts';
import { signedPath } from './http/links.ts';
import { localProcesses, type NodeRegistry } from './nodes.ts';
import { DEFAULT_VARIANTS, type ImageVariant, variantFile } from './processors/variants.ts';
import type { Job, JobCounts, JobQueue } from './queue/types.ts';
import type { Viewer } from './tokens.ts';
import type { WebhookPayload } from './webhooks.ts';

export interface FilesDashboardDeps {
  config: Pick<FilesConfig, 'token' | 'maxUpload'> &
    Partial<
      Pick<FilesConfig, 'contentOrigin' | 'webhookUrl' | 'tokensFile' | 'tenantQuota' | 'imageVariants'>
    >;
  catalog: Pick<Catalog, 'list' | 'get' | 'derived'> & Partial<Pick<Catalog, 'usage'>>;
  queue: JobQueue;
  bus: Pick<FilesBus, 'on'>;
  /** The other nodes, when the service spans machines: the page shows their processes too. */
  registry?: NodeRegistry | undefined;
  /** This process's `weftjs/metrics` snapshot, shown when no supervisor serves merged metrics. */
  metrics?: (() => MetricsSnapshot) | undefined;
  /** Each backend's breaker state, shown in the Files section (a backend not `up` cannot take uploads). */
  backends?: () => BackendView[];
  /** Webhooks are configured: the page shows their deliveries. */
  webhooks?: boolean;
  /**
   * With scoped tokens, thumbnails are signed links (a browser sends the page's credentials to its own origin only,
   * and a separate content origin would get none): the secret they are signed with.
   */
  linkSecret?: Buffer;
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
/** The output the dashboard shows a file by: the image copy named `thumbnail`, else the first cover copy, else the first. */
export function thumbnailOf(variants: readonly ImageVariant[] = DEFAULT_VARIANTS): string {
  const v =
    variants.find((x) => x.name === 'thumbnail') ?? variants.find((x) => x.fit === 'cover') ?? variants[0]!;
  return variantFile(v);
}
/** The owner of an event whose file is gone: no tenant's, so only an admin's view shows it. */
const UNKNOWN_OWNER = '\u0000unknown';

/** The file service's dashboard: a `weftjs/dashboard` that also learns who opens each of its requests. */
export interface FilesDashboard extends Dashboard {
  /**
   * Records who asks for a dashboard path (its token's viewer, once checked): what `view` shows them. A tenant's
   * open stream (`stream`) also has that tenant's own recent files read each tick, until it closes.
   */
  watch(req: IncomingMessage, viewer: Viewer, stream: boolean): void;
}

/** Whose files and events a viewer sees on the dashboard: undefined for everything (an admin, an open service). */
const ownerOf = (viewer: Viewer | undefined) => (viewer ? listScope(viewer) : undefined);

function describe(e: FilesEvent, owner: string | null | undefined): EventView {
  let text: string;
  if (e.type === 'file.uploaded') text = `uploaded ${e.data.name} (${e.data.type}, ${e.data.size} bytes)`;
  else if (e.type === 'file.deleted') text = `deleted file ${e.data.fileId}`;
  else if (e.type === 'job.completed')
    text = `job #${e.data.jobId} (${e.data.kind}) completed in ${e.data.ms} ms`;
  else {
    const then = e.data.dead ? 'dead-lettered' : 'will be retried';
    text = `job #${e.data.jobId} (${e.data.kind}) failed, ${then}: ${e.data.error}`;
  }
  return { id: e.id, type: e.type, at: e.at, text, ...(owner === undefined ? {} : { owner }) };
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
export function filesDashboard(deps: FilesDashboardDeps): FilesDashboard {
  const { catalog, queue, bus, config } = deps;
  const THUMBNAIL = thumbnailOf(config.imageVariants);
  const local = localProcesses({
    title: 'files',
    metrics: deps.metrics,
    ...(deps.env ? { env: deps.env } : {}),
  });
  const { registry } = deps;
  let unwatch: (() => void) | undefined;
  const auth = config.token !== undefined || config.tokensFile !== undefined;
  const tenanted = config.tokensFile !== undefined || (config.tenantQuota ?? 0) > 0;
  /** Who opened each dashboard request. */
  const viewers = new WeakMap<IncomingMessage, Viewer>();
  /** Tenants with a stream open now (how many each): their own recent files are read for them each tick. */
  const watching = new Map<string | null, number>();
  /** The recent files of each watching tenant, and what each tenant stores, as last read (and when). */
  let recentOf = new Map<string | null, FileView[]>();
  let usage: { at: number; tenants: TenantView[] | undefined } | undefined;
  /** Whose file each id is, for the events about it (bounded: cleared when it grows past 10 000). */
  const owners = new Map<string, string | null>();
  const ownerOfFile = async (fileId: string): Promise<string | null | undefined> => {
    if (owners.has(fileId)) return owners.get(fileId);
    const f = await catalog.get(fileId);
    if (!f) return undefined;
    if (owners.size > 10_000) owners.clear();
    owners.set(fileId, f.tenant ?? null);
    return f.tenant ?? null;
  };
  let pending: FilesEvent[] = [];
  let off: (() => void) | undefined;
  let lists: { at: number; dead: number; files: FileView[]; failures: FailureView[] } | undefined;

  /**
   * A thumbnail's URL: on the content origin when there is one. With scoped tokens, a signed link expiring at the end
   * of the next hour (stable within the hour, so the page does not load it again every second).
   */
  function thumbnailUrl(id: string): string {
    const at = config.contentOrigin ?? '';
    if (!config.tokensFile || !deps.linkSecret) return `${at}/files/${id}/derived/${THUMBNAIL}`;
    const hour = 3_600;
    const expires = (Math.floor(Date.now() / 1000 / hour) + 2) * hour;
    return `${at}${signedPath(deps.linkSecret, id, { kind: 'derived', name: THUMBNAIL }, expires)}`;
  }

  async function file(f: FileRecord): Promise<FileView> {
    const jobs = await queue.list({ fileId: f.id, limit: 10 });
    const state = fileState(jobs);
    const thumb = (await catalog.derived(f.id)).some((d) => d.name === THUMBNAIL);
    const done = state === 'completed' ? Math.max(...jobs.map((j) => j.finishedAt ?? 0)) : 0;
    return {
      id: f.id,
      name: f.name,
      type: f.type,
      size: f.size,
      createdAt: f.createdAt,
      state,
      url: `/files/${f.id}`,
      owner: f.tenant ?? null,
      ...(thumb ? { thumbnail: thumbnailUrl(f.id) } : {}),
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
    const base = await local.read(warnings);
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
    // With tenants: whose each event is about (events name their file's tenant; job events are looked up), what
    // each tenant stores, and the recent files of each tenant watching.
    let described: EventView[];
    let tenants: TenantView[] | undefined;
    if (tenanted) {
      described = [];
      for (const e of events) {
        const fromEvent = 'tenant' in e.data ? e.data.tenant : undefined;
        if (fromEvent !== undefined) owners.set(e.data.fileId, fromEvent);
        const owner =
          fromEvent !== undefined ? fromEvent : await ownerOfFile(e.data.fileId).catch(() => undefined);
        // An event whose owner cannot be told (its file deleted since) is shown to the admins alone.
        described.push(describe(e, owner === undefined ? UNKNOWN_OWNER : owner));
      }
      // Read again as the shared lists are (readLists): on news, when something is in flight, or once stale.
      const fresh =
        usage &&
        events.length === 0 &&
        Date.now() - usage.at < LISTS_MAX_AGE_MS &&
        [...watching.keys()].every((t) => recentOf.get(t)?.every((f) => FINAL.has(f.state)));
      if (!fresh) {
        try {
          const quota = config.tenantQuota ?? 0;
          const rows = (await catalog.usage?.())?.map((u) => ({
            name: u.tenant,
            files: u.files,
            bytes: u.bytes,
            ...(quota > 0 ? { quota } : {}),
          }));
          const mine = new Map<string | null, FileView[]>();
          for (const tenant of watching.keys())
            mine.set(
              tenant,
              await Promise.all((await catalog.list(RECENT, undefined, { tenant })).map(file)),
            );
          recentOf = mine;
          usage = { at: Date.now(), tenants: rows };
        } catch (err) {
          warnings.push(`Tenants could not be read: ${(err as Error).message}`);
        }
      }
      tenants = usage?.tenants;
    } else described = events.map((e) => describe(e, undefined));
    return {
      ...base,
      ...(registry ? { node: registry.node, nodes: registry.others() } : {}),
      jobs: { counts, failures, retry: { path: '/jobs/:id/retry', auth } },
      ...(webhooks ? { webhooks } : {}),
      files: {
        upload: { path: '/files', auth, maxBytes: config.maxUpload },
        recent: files,
        ...(tenants ? { tenants } : {}),
        ...(deps.backends ? { backends: deps.backends() } : {}),
      },
      events: described,
      ...(warnings.length ? { warnings } : {}),
    };
  }

  /** What a tenant's token sees: its own files, events and usage, and the processes; not every tenant's jobs. */
  function view(snap: DashboardSnapshot, req: IncomingMessage): DashboardSnapshot {
    const only = ownerOf(viewers.get(req));
    if (!only) return snap;
    const { jobs: _jobs, webhooks: _webhooks, files, events, ...rest } = snap;
    return {
      ...rest,
      ...(files
        ? {
            files: {
              ...files,
              recent: recentOf.get(only.tenant) ?? files.recent.filter((f) => f.owner === only.tenant),
              ...(files.tenants ? { tenants: files.tenants.filter((t) => t.name === only.tenant) } : {}),
            },
          }
        : {}),
      ...(events ? { events: events.filter((e) => e.owner === only.tenant) } : {}),
    };
  }

  function watch(req: IncomingMessage, viewer: Viewer, stream: boolean): void {
    viewers.set(req, viewer);
    const only = ownerOf(viewer);
    if (!stream || !only) return;
    watching.set(only.tenant, (watching.get(only.tenant) ?? 0) + 1);
    req.once('close', () => {
      const n = (watching.get(only.tenant) ?? 1) - 1;
      if (n > 0) watching.set(only.tenant, n);
      else {
        watching.delete(only.tenant);
        recentOf.delete(only.tenant);
      }
    });
  }

  const dashboard = createDashboard({
    snapshot,
    view,
    // Thumbnails come from the content origin when there is one.
    imageOrigins: config.contentOrigin ? [config.contentOrigin] : [],
    // The bus reads the other processes' events only while someone listens: only while a page is open.
    onActive: () => {
      off ??= bus.on('*', (e) => {
        if (pending.length < MAX_EVENTS) pending.push(e);
      });
      unwatch ??= registry?.watch();
    },
    onIdle: () => {
      off?.();
      off = undefined;
      unwatch?.();
      unwatch = undefined;
      pending = [];
      local.close();
    },
  });
  return Object.assign(dashboard, { watch });
}

/** Serves the dashboard's paths from fastify, and ends its streams when the app closes (else close() waits on them). */
export function routeDashboard(
  app: FastifyInstance,
  dashboard: Dashboard | FilesDashboard,
  guard?: onRequestHookHandler,
): void {
  for (const path of DASHBOARD_PATHS) {
    app.get(path, guard ? { onRequest: guard } : {}, (request, reply) => {
      reply.hijack();
      if ('watch' in dashboard) dashboard.watch(request.raw, viewerOf(request), path === '/dashboard/events');
      dashboard.handle(request.raw, reply.raw);
    });
  }
  app.addHook('preClose', async () => {
    await dashboard.close();
  });
}
