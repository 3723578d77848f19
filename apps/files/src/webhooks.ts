/**
 * Webhooks: `file.processed` (every processing job of a file completed) and `job.dead` (a processing job
 * dead-lettered) POSTed to `FILES_WEBHOOK_URL` and to an upload's own `webhook` URL, signed with HMAC-SHA256. Each
 * delivery is a job of kind `webhook` in the job queue, queued with the state change it reports (see
 * `FollowUps` in queue/types.ts), so its retries, backoff, dead letters, leases and crash recovery are the queue's,
 * and the runner sends it on its main thread. Its envelope and delivery id are fixed when it is queued: a retry sends
 * the same body with a fresh signature.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Catalog, DerivedRecord, FileRecord } from './catalog/types.ts';
import type { FilesConfig } from './config.ts';
import { FilesError } from './errors.ts';
import type { FollowUp, FollowUps, Job, JobKind } from './queue/types.ts';

/** What happened to a file, in `data` of a `file.processed` webhook. URLs are relative to the service. */
export interface FileProcessedData {
  fileId: string;
  name: string;
  type: string;
  size: number;
  sha256: string;
  createdAt: number;
  url: string;
  content: string;
  /** Its processing jobs, with what each found (rows loaded, image size...). */
  jobs: {
    id: number;
    kind: JobKind;
    state: string;
    attempts: number;
    result: Record<string, unknown> | null;
  }[];
  derived: (DerivedRecord & { url: string })[];
  /** A CSV file's loaded rows (`GET /files/:id/rows`). */
  rows?: string;
}

/** A processing job that was dead-lettered, in `data` of a `job.dead` webhook. */
export interface JobDeadData {
  fileId: string;
  /** The file's name; absent when it was not known (its process died on the job's last attempt). */
  name?: string;
  jobId: number;
  kind: JobKind;
  attempts: number;
  maxAttempts: number;
  error: { code: string | null; message: string };
}

export interface WebhookEvents {
  'file.processed': FileProcessedData;
  'job.dead': JobDeadData;
}

export type WebhookEventType = keyof WebhookEvents;

/** The body of every webhook. `id` is the delivery's: the same in every retry of it (`X-Weft-Delivery`). */
export type WebhookEvent = {
  [K in WebhookEventType]: { id: string; type: K; createdAt: number; data: WebhookEvents[K] };
}[WebhookEventType];

/** What a `webhook` job carries: its event, and where it goes (resolved when it is sent; see {@link Webhooks}). */
export interface WebhookPayload {
  /** `config`: `FILES_WEBHOOK_URL`; `upload`: the file's own URL (gone with the file). */
  target: 'config' | 'upload';
  event: WebhookEvent;
}

/** Why {@link verifyWebhook} refused a request. */
export type SignatureProblem = 'malformed' | 'stale' | 'mismatch';

/** A webhook whose signature does not verify: `reason` says how. */
export class WebhookSignatureError extends FilesError {
  override name = 'WebhookSignatureError';
  readonly reason: SignatureProblem;

  constructor(reason: SignatureProblem, message: string) {
    super('ERR_WEFT_FILES_WEBHOOK_SIGNATURE', message);
    this.reason = reason;
  }
}

const hmac = (secret: string, t: number, body: string | Uint8Array) =>
  createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');

/**
 * The `X-Weft-Signature` value of `body` sent at `timestamp` (unix seconds): `t=<timestamp>,v1=<hex HMAC-SHA256 of
 * "<timestamp>.<body>" with the secret>`.
 */
export function signWebhook(
  secret: string,
  body: string | Uint8Array,
  timestamp = Math.floor(Date.now() / 1000),
): string {
  return `t=${timestamp},v1=${hmac(secret, timestamp, body)}`;
}

export interface VerifyOptions {
  secret: string;
  /** The `X-Weft-Signature` header as received. */
  header: string | string[] | undefined;
  /** The raw body, exactly as received (parse it only after this). */
  body: string | Uint8Array;
  /** Largest difference between its timestamp and now, either way (replays are refused after it). Default 300. */
  toleranceSeconds?: number;
  /** Now, in unix seconds. Default: the clock. */
  now?: number;
}

/**
 * Checks a webhook's signature, in constant time, and its timestamp; returns the parsed event. Throws
 * {@link WebhookSignatureError} (`ERR_WEFT_FILES_WEBHOOK_SIGNATURE`; `reason` `malformed`, `stale` or `mismatch`).
 * Several `v1=` values (a secret being rotated) pass when one matches.
 *
 * @example
 * ```ts
 * // In a receiver (a whole one: examples/webhook-receiver.ts, which test/webhooks.test.ts runs):
 * const chunks = [];
 * for await (const chunk of req) chunks.push(chunk);
 * const event = verifyWebhook({
 *   secret: process.env.FILES_WEBHOOK_SECRET,
 *   header: req.headers['x-weft-signature'],
 *   body: Buffer.concat(chunks), // the raw bytes, not parsed and serialised again
 * }); // throws WebhookSignatureError: answer 400
 * if (event.type === 'file.processed') console.log(event.data.name, event.data.derived);
 * ```
 */
export function verifyWebhook(options: VerifyOptions): WebhookEvent {
  const { secret, header, body, toleranceSeconds = 300 } = options;
  if (typeof header !== 'string' || header === '')
    throw new WebhookSignatureError('malformed', 'No X-Weft-Signature header (or more than one)');
  let t: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const [key, value = ''] = part.trim().split('=', 2);
    if (key === 't' && /^\d{1,12}$/.test(value)) t = Number(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) signatures.push(value);
  }
  if (t === undefined || signatures.length === 0)
    throw new WebhookSignatureError('malformed', 'X-Weft-Signature must be t=<unix seconds>,v1=<hex HMAC>');
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > toleranceSeconds)
    throw new WebhookSignatureError('stale', `The signature's timestamp is ${now - t} s from now`);
  const expected = Buffer.from(hmac(secret, t, body), 'hex');
  // Every candidate is compared (no early exit), each in constant time.
  const ok = signatures.reduce(
    (found, s) => timingSafeEqual(Buffer.from(s, 'hex'), expected) || found,
    false,
  );
  if (!ok) throw new WebhookSignatureError('mismatch', 'The signature does not match the body');
  return JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8')) as WebhookEvent;
}

type WebhookConfig = Pick<FilesConfig, 'webhookUrl' | 'webhookSecret' | 'webhookOrigins'>;

/** Origins per-upload URLs may point to: `webhookOrigins` and the origin of `webhookUrl`; none without a secret. */
function allowedOrigins(config: Partial<WebhookConfig>): Set<string> {
  if (!config.webhookSecret) return new Set();
  const origins = (config.webhookOrigins ?? '').split(',').filter((o) => o !== '');
  if (config.webhookUrl) origins.push(new URL(config.webhookUrl).origin);
  return new Set(origins);
}

const badUrl = (message: string) => new FilesError('ERR_WEFT_FILES_WEBHOOK_URL', message);

/**
 * An upload's own webhook URL (the `webhook` query parameter), checked before its body is read: an http(s) URL
 * without credentials whose origin is allowed. Anything else is refused with 400 `ERR_WEFT_FILES_WEBHOOK_URL`: an
 * upload must not make the service call an address of its choosing (an internal one, a cloud metadata endpoint).
 *
 * @example
 * ```ts
 * const webhook = uploadWebhook(config, (request.query as { webhook?: unknown }).webhook); // string | undefined
 * ```
 */
export function uploadWebhook(config: Partial<WebhookConfig>, raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw === '' || raw.length > 2_048)
    throw badUrl('The webhook parameter must be one URL of at most 2 048 characters');
  const allowed = allowedOrigins(config);
  if (allowed.size === 0) throw badUrl('This service sends no webhooks (FILES_WEBHOOK_SECRET is not set)');
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (!url || !/^https?:$/.test(url.protocol) || url.username || url.password)
    throw badUrl('The webhook URL must be an http:// or https:// URL without credentials');
  if (!allowed.has(url.origin))
    throw badUrl(`The webhook URL's origin ${url.origin} is not allowed (FILES_WEBHOOK_ORIGINS)`);
  url.hash = '';
  return url.href;
}

/** What the event keeps of a job's result: the figures a receiver acts on, not the whole of it. */
function summary(job: Job): Record<string, unknown> | null {
  const r = job.result as Record<string, unknown> | null;
  if (!r || typeof r !== 'object') return null;
  if (job.kind === 'csv') return { rows: r.rows, badRows: r.badRows, columns: r.columns };
  // A processor plug-in's: the names of its outputs and its own result.
  if (job.kind !== 'image') return { outputs: r.outputs, result: r.result };
  const m = (r.metadata ?? {}) as Record<string, unknown>;
  return { format: m.format, width: m.width, height: m.height, outputs: r.outputs };
}

/** The follow-ups of a job dead-lettered by a claim because its process died on its last attempt (queue option). */
export function stalledDead(
  config: WebhookConfig & Pick<FilesConfig, 'webhookAttempts'>,
  job: Job,
): FollowUp[] {
  if (allowedOrigins(config).size === 0) return [];
  const error = { code: job.errorCode ?? 'ERR_WEFT_FILES_STALLED', message: job.lastError ?? 'stalled' };
  // The file's own URL cannot be read here (it may be in another database): its delivery looks it up when sent, and
  // is skipped when there is none.
  const targets = config.webhookUrl ? (['config', 'upload'] as const) : (['upload'] as const);
  return targets.map((t) => deadFollowUp(t, job, error, undefined, config.webhookAttempts, Date.now()));
}

function deadFollowUp(
  target: WebhookPayload['target'],
  job: Job,
  error: JobDeadData['error'],
  name: string | undefined,
  maxAttempts: number,
  now: number,
): FollowUp {
  const id = randomUUID();
  const data: JobDeadData = {
    fileId: job.fileId,
    ...(name === undefined ? {} : { name }),
    jobId: job.id,
    kind: job.kind,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    error,
  };
  const event: WebhookEvent = { id, type: 'job.dead', createdAt: now, data };
  // Every death is news (a retried job may die again): one key per delivery.
  return followUp(target, job.fileId, event, `webhook:${id}`, maxAttempts);
}

function followUp(
  target: WebhookPayload['target'],
  fileId: string,
  event: WebhookEvent,
  key: string,
  maxAttempts: number,
): FollowUp {
  return { kind: 'webhook', fileId, payload: { target, event } satisfies WebhookPayload, maxAttempts, key };
}

/** What a delivery reports as its job's result. */
export type DeliveryResult = { status: number; ms: number } | { skipped: string };

export interface WebhooksOptions {
  config: WebhookConfig & Pick<FilesConfig, 'webhookTimeout' | 'webhookAttempts'>;
  catalog: Pick<Catalog, 'get' | 'derived' | 'webhookOf'>;
  /** Now, epoch ms (tests). Default `Date.now`. */
  clock?: () => number;
}

/**
 * Makes the webhook follow-ups of job outcomes (for the runner) and sends webhook jobs.
 *
 * @example
 * ```ts
 * const webhooks = Webhooks.fromConfig(config, catalog); // undefined when none is configured
 * const then = await webhooks?.completed(job);
 * await queue.complete(job, owner, result, then);
 * ```
 */
export class Webhooks {
  readonly #o: WebhooksOptions;
  readonly #secret: string;
  readonly #allowed: Set<string>;
  readonly #clock: () => number;

  constructor(options: WebhooksOptions) {
    this.#o = options;
    this.#secret = options.config.webhookSecret ?? '';
    this.#allowed = allowedOrigins(options.config);
    this.#clock = options.clock ?? Date.now;
  }

  /** The webhooks the configuration asks for; undefined when it asks for none (nothing is queued then). */
  static fromConfig(
    config: WebhooksOptions['config'],
    catalog: WebhooksOptions['catalog'],
  ): Webhooks | undefined {
    return allowedOrigins(config).size > 0 ? new Webhooks({ config, catalog }) : undefined;
  }

  /** Where events about `fileId` go; the file's own URL only once (not when it is `FILES_WEBHOOK_URL`'s). */
  async #targets(fileId: string): Promise<WebhookPayload['target'][]> {
    const own = await this.#o.catalog.webhookOf(fileId);
    const targets: WebhookPayload['target'][] = this.#o.config.webhookUrl ? ['config'] : [];
    if (own !== undefined && own !== this.#o.config.webhookUrl) targets.push('upload');
    return targets;
  }

  /** The follow-ups of a processing job about to be completed: `file.processed` if it is its file's last. */
  async completed(job: Job): Promise<FollowUps | undefined> {
    if (job.kind === 'webhook') return undefined;
    const file = await this.#o.catalog.get(job.fileId);
    const targets = file ? await this.#targets(file.id) : [];
    if (!file || targets.length === 0) return undefined;
    const derived = await this.#o.catalog.derived(file.id);
    const createdAt = this.#clock();
    const attempts = this.#o.config.webhookAttempts;
    // Called where the queue knows the file's jobs are all completed (inside its transaction, for SQLite).
    const processed = (jobs: Job[]) => {
      const data = processedData(file, jobs, derived);
      return targets.map((target) => {
        const event: WebhookEvent = { id: randomUUID(), type: 'file.processed', createdAt, data };
        // A file is processed once (completed jobs stay completed): one key per file and target.
        return followUp(target, file.id, event, `webhook:processed:${file.id}:${target}`, attempts);
      });
    };
    return { processed };
  }

  /** The follow-ups of a processing job's failure that may be its last: `job.dead`, queued only if it is. */
  async failed(job: Job, error: JobDeadData['error']): Promise<FollowUps | undefined> {
    if (job.kind === 'webhook') return undefined; // no webhook about a webhook
    const file = await this.#o.catalog.get(job.fileId);
    if (!file) return undefined; // deleted: its jobs go with it
    const targets = await this.#targets(file.id);
    const now = this.#clock();
    const attempts = this.#o.config.webhookAttempts;
    const dead = targets.map((t) => deadFollowUp(t, job, error, file.name, attempts, now));
    return dead.length > 0 ? { dead } : undefined;
  }

  /**
   * Sends a `webhook` job: 2xx is delivered; 408, 429, 5xx, no answer within `webhookTimeout` or no connection
   * fail it for a retry; any other answer (redirects are not followed) fails it for good. Aborting `signal` (the
   * runner stopping, the lease lost) rejects with its reason.
   */
  async deliver(job: Job, signal: AbortSignal): Promise<DeliveryResult> {
    const payload = job.payload as WebhookPayload | null;
    if (!payload?.event?.id) throw badUrl(`Job ${job.id} has no webhook payload`);
    const url = await this.#resolve(payload.target, job.fileId);
    if (url === undefined) return { skipped: 'the file has no webhook URL of its own (deleted since?)' };
    const target = new URL(url);
    const body = JSON.stringify(payload.event);
    const timeoutMs = this.#o.config.webhookTimeout;
    const timeout = AbortSignal.timeout(timeoutMs);
    const started = performance.now();
    let res: Response;
    try {
      res = await fetch(target, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.any([signal, timeout]),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'weft-files-webhooks',
          'x-weft-event': payload.event.type,
          'x-weft-delivery': payload.event.id,
          'x-weft-attempt': String(job.attempts),
          'x-weft-signature': signWebhook(this.#secret, body, Math.floor(this.#clock() / 1000)),
        },
        body,
      });
      // The answer's body is not read: only its status counts (and a receiver cannot make this process buffer it).
      await res.body?.cancel();
    } catch (err) {
      if (signal.aborted) throw signal.reason ?? err;
      // Messages name the origin only: the URL's path or query may hold a token, and job errors are public.
      if (timeout.aborted) {
        throw new FilesError(
          'ERR_WEFT_FILES_WEBHOOK_TIMEOUT',
          `${target.origin} did not answer within ${timeoutMs} ms`,
        );
      }
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new FilesError(
        'ERR_WEFT_FILES_WEBHOOK_UNREACHABLE',
        `${target.origin} could not be reached: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
        { cause: err },
      );
    }
    const ms = Math.round(performance.now() - started);
    const status = res.status;
    if (status >= 200 && status < 300) return { status, ms };
    const answered = `${target.origin} answered ${status}${res.statusText ? ` ${res.statusText}` : ''}`;
    if (status === 408 || status === 429 || status >= 500)
      throw new FilesError('ERR_WEFT_FILES_WEBHOOK_FAILED', answered);
    throw new FilesError(
      'ERR_WEFT_FILES_WEBHOOK_REJECTED',
      `${answered}${status < 400 ? ' (redirects are not followed)' : ''}; not retried`,
    );
  }

  /** The URL of a target now: a file's own URL must still be allowed (the allowlist may have shrunk since). */
  async #resolve(target: WebhookPayload['target'], fileId: string): Promise<string | undefined> {
    if (target === 'config') {
      const url = this.#o.config.webhookUrl;
      if (!url) throw badUrl('FILES_WEBHOOK_URL is no longer set');
      return url;
    }
    const url = await this.#o.catalog.webhookOf(fileId);
    if (url !== undefined && !this.#allowed.has(new URL(url).origin))
      throw badUrl(`The webhook URL's origin ${new URL(url).origin} is no longer allowed`);
    return url;
  }
}

function processedData(file: FileRecord, jobs: Job[], derived: DerivedRecord[]): FileProcessedData {
  const at = `/files/${file.id}`;
  return {
    fileId: file.id,
    name: file.name,
    type: file.type,
    size: file.size,
    sha256: file.sha256,
    createdAt: file.createdAt,
    url: at,
    content: `${at}/content`,
    jobs: jobs.map((j) => ({
      id: j.id,
      kind: j.kind,
      state: j.state,
      attempts: j.attempts,
      result: summary(j),
    })),
    derived: derived.map((d) => ({ ...d, url: `${at}/derived/${encodeURIComponent(d.name)}` })),
    ...(jobs.some((j) => j.kind === 'csv') ? { rows: `${at}/rows` } : {}),
  };
}
