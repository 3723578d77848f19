/**
 * The file service's configuration: defaults, then a JSON file (`FILES_CONFIG`, else `files.config.json` in the
 * working directory), then `FILES_*` environment variables. Validated once at start; a wrong value stops the start
 * with `ERR_WEFT_FILES_CONFIG` naming the setting, its source and what it must be.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { FilesError } from './errors.ts';
import { BUILT_IN_DEFAULTS } from './processors/builtin.ts';
import { type ProcessorConfig, parseProcessors, variantClash } from './processors/registry.ts';
import { type ImageVariant, variantsProblem } from './processors/variants.ts';

export type { ProcessorConfig } from './processors/registry.ts';

export interface FilesConfig {
  /** TCP port. `PORT` or `FILES_PORT`. Default 3000. */
  port: number;
  /** Address to listen on. Default 127.0.0.1 (use 0.0.0.0 in a container). */
  host: string;
  /** Where the database, the files and their derived outputs live. Default `./data`. */
  dataDir: string;
  /**
   * One shared token: when set, writes (upload, delete, retry) need `Authorization: Bearer <token>`; reads stay open
   * unless `tokensFile` is set too. It holds every scope, for no tenant.
   */
  token: string | undefined;
  /**
   * Scoped tokens, stored hashed (`weftjs-files tokens create` writes them): when set, every route but the health
   * probes needs a token with the right scope, and files belong to the uploading token's tenant. Read again when it
   * changes. `FILES_TOKENS_FILE`.
   */
  tokensFile: string | undefined;
  /**
   * The secret signed links are made with (`POST /files/:id/links`); every node must have the same one. Default: one
   * made at random and kept in `dataDir/link.secret` (enough on one machine). `FILES_LINK_SECRET`.
   */
  linkSecret: string | undefined;
  /** Largest upload in bytes. Default 1 GiB. */
  maxUpload: number;
  /**
   * Uploads a minute from one client address (POST and PUT `/files`, tus creations), counted across every worker of
   * this machine (or, with `QUEUE_URL`, every node); then `429`. Default 0: no limit.
   */
  uploadsPerMinute: number;
  /**
   * Bytes of uploads each tenant may store (a tenant's tokens share it; files of no tenant share one), checked when
   * an upload starts; then `507 ERR_WEFT_FILES_QUOTA`. `FILES_TENANT_QUOTA`, e.g. `10GB`. Default 0: no quota.
   */
  tenantQuota: number;
  /** Queued jobs beyond which uploads are shed with 503. Default 10 000. */
  maxQueued: number;
  /** Event-loop delay p99 (ms) beyond which uploads are shed. Default 500. */
  maxEventLoopDelay: number;
  /** Tries of a job before it is dead-lettered. Default 5. */
  maxAttempts: number;
  /** How long a claimed job stays leased without a heartbeat. Default 30 s. */
  leaseMs: number;
  /** First retry delay; doubles per attempt, up to 5 minutes. Default 1 s. */
  retryDelayMs: number;
  /** Longest a single job may run. Default 5 minutes. */
  jobTimeoutMs: number;
  /** How often an idle runner looks for jobs another process queued. Default 250 ms. */
  pollMs: number;
  /** Malformed CSV rows tolerated per file. Default 1 000. */
  csvMaxBadRows: number;
  /** sharp's pixel limit per image (pixel bombs). Default 100 000 000. */
  limitInputPixels: number;
  /**
   * Jobs run at once per process. Default: the process's thread budget (`WEFT_THREADS`), else 1. 0 makes an
   * upload-only node: it takes uploads and serves reads, and leaves every job to the processes that run them.
   */
  concurrency: number;
  /** Deadline of a graceful stop. Default 30 s. */
  shutdownTimeout: number;
  /** An upload whose body sends nothing for this long is answered 408 and its connection closed. Default 30 s. */
  uploadIdleTimeout: number;
  /** Longest an upload's body may take in all; then 408 and the connection is closed. Default 1 h. */
  uploadTimeout: number;
  /** Longest a request waits for the SQLite database while another process holds its lock; then 503. Default 5 s. */
  dbBusyTimeout: number;
  /**
   * Deadline of each call to Redis or RabbitMQ (`queueUrl`): adding an upload's jobs, claiming, reading counts; then 503
   * `ERR_WEFT_FILES_QUEUE_UNAVAILABLE` (an upload is not kept). Default 1 s.
   */
  queueTimeout: number;
  /** Deadline of each call to PostgreSQL (`databaseUrl`), and of one query or connection; then 503. Default 1 s. */
  databaseTimeout: number;
  /** Deadline of each storage call that does not move a whole file (stat, read's start, delete). Default 1 s. */
  storageTimeout: number;
  /** Extra tries, with backoff (20 ms doubling to 200 ms), of a backend call that is safe to repeat. Default 2. */
  backendRetries: number;
  /** Consecutive failed calls to a backend that open its circuit breaker. Default 5. */
  breakerThreshold: number;
  /** How long an open breaker fails calls at once before it lets one probe through. Default 2 s. */
  breakerHalfOpen: number;
  /** `s3://bucket/prefix?endpoint=…`: keep file bytes in S3-compatible storage instead of `dataDir`. */
  storageUrl: string | undefined;
  /**
   * `redis://host:6379[/db][?queue=name]`: the job queue on Redis (BullMQ), and events across machines; or
   * `amqp://user:password@host:5672[/vhost][?queue=name]`: jobs delivered by RabbitMQ, their state in PostgreSQL
   * with `databaseUrl` (several machines), else in this machine's SQLite file.
   */
  queueUrl: string | undefined;
  /**
   * This node's name on the dashboard's processes panel when the service spans machines (`QUEUE_URL`). Default:
   * `<host name>:<pid of its supervisor>` (or of the process, when nothing supervises it).
   */
  nodeName: string | undefined;
  /** Required as `Authorization: Bearer <token>` by `GET /metrics` when set (Prometheus: `bearer_token`). */
  metricsToken: string | undefined;
  /** `postgres://…`: file records and CSV tables in PostgreSQL instead of the embedded SQLite file. */
  databaseUrl: string | undefined;
  /**
   * `https://files-content.example.com`: a separate origin (another host name for this service, or a CDN in front
   * of it) that the content and derived-output links handed out point to; only those routes answer on it.
   */
  contentOrigin: string | undefined;
  /**
   * How long an unfinished tus upload (`/uploads`) may be resumed after its creation; then it is removed (answered
   * 410 when resumed). Default 24 h.
   */
  tusExpiry: number;
  /** `https://hooks.example.com/weft`: receives `file.processed` and `job.dead` events (see docs/files.md). */
  webhookUrl: string | undefined;
  /** Signs every webhook (HMAC-SHA256, `X-Weft-Signature`); at least 16 characters; required to send any. */
  webhookSecret: string | undefined;
  /**
   * Comma-separated origins (`https://app.example.com`) an upload's own `webhook` URL may point to; the origin of
   * `webhookUrl` is always allowed. Other URLs are refused (400), so uploads cannot make the service call anywhere.
   */
  webhookOrigins: string | undefined;
  /** Longest one webhook delivery may take (connect, send, answer); then it is retried. Default 10 s. */
  webhookTimeout: number;
  /** Tries of a webhook delivery before it is dead-lettered (backoff as `retryDelayMs`). Default 12 (~18 min). */
  webhookAttempts: number;
  /**
   * Processor plug-ins run on the uploads whose type they match, beside the built-in image and CSV processors
   * (docs/files.md, "Writing a processor"). In the config file, or `FILES_PROCESSORS` as JSON; a module's path is
   * relative to the config file (to the working directory from the environment). Default: none.
   */
  processors: readonly ProcessorConfig[];
  /**
   * The copies the image job makes of every image: `[{ name, width?, height?, fit, format, quality? }]`, each stored
   * as `<name>.<format>`. In the config file, or `FILES_IMAGE_VARIANTS` as JSON. Default: `thumbnail.webp` (256×256,
   * cover) and `display.webp` (inside 1920×1920).
   */
  imageVariants: readonly ImageVariant[];
}

type Kind = 'int' | 'size' | 'duration' | 'string' | 'path' | 'processors' | 'variants';

/** Every setting: its environment variable(s) and its kind. The config file uses the key names. */
const SETTINGS: Record<keyof FilesConfig, { env: string[]; kind: Kind }> = {
  port: { env: ['FILES_PORT', 'PORT'], kind: 'int' },
  host: { env: ['FILES_HOST'], kind: 'string' },
  dataDir: { env: ['FILES_DATA_DIR'], kind: 'path' },
  token: { env: ['FILES_TOKEN'], kind: 'string' },
  tokensFile: { env: ['FILES_TOKENS_FILE'], kind: 'path' },
  linkSecret: { env: ['FILES_LINK_SECRET'], kind: 'string' },
  maxUpload: { env: ['FILES_MAX_UPLOAD'], kind: 'size' },
  uploadsPerMinute: { env: ['FILES_UPLOADS_PER_MINUTE'], kind: 'int' },
  tenantQuota: { env: ['FILES_TENANT_QUOTA'], kind: 'size' },
  maxQueued: { env: ['FILES_MAX_QUEUED'], kind: 'int' },
  maxEventLoopDelay: { env: ['FILES_MAX_EVENT_LOOP_DELAY'], kind: 'duration' },
  maxAttempts: { env: ['FILES_MAX_ATTEMPTS'], kind: 'int' },
  leaseMs: { env: ['FILES_LEASE'], kind: 'duration' },
  retryDelayMs: { env: ['FILES_RETRY_DELAY'], kind: 'duration' },
  jobTimeoutMs: { env: ['FILES_JOB_TIMEOUT'], kind: 'duration' },
  pollMs: { env: ['FILES_POLL'], kind: 'duration' },
  csvMaxBadRows: { env: ['FILES_CSV_MAX_BAD_ROWS'], kind: 'int' },
  limitInputPixels: { env: ['FILES_LIMIT_INPUT_PIXELS'], kind: 'int' },
  concurrency: { env: ['FILES_CONCURRENCY'], kind: 'int' },
  shutdownTimeout: { env: ['FILES_SHUTDOWN_TIMEOUT'], kind: 'duration' },
  uploadIdleTimeout: { env: ['FILES_UPLOAD_IDLE_TIMEOUT'], kind: 'duration' },
  uploadTimeout: { env: ['FILES_UPLOAD_TIMEOUT'], kind: 'duration' },
  dbBusyTimeout: { env: ['FILES_DB_BUSY_TIMEOUT'], kind: 'duration' },
  queueTimeout: { env: ['FILES_QUEUE_TIMEOUT'], kind: 'duration' },
  databaseTimeout: { env: ['FILES_DATABASE_TIMEOUT'], kind: 'duration' },
  storageTimeout: { env: ['FILES_STORAGE_TIMEOUT'], kind: 'duration' },
  backendRetries: { env: ['FILES_BACKEND_RETRIES'], kind: 'int' },
  breakerThreshold: { env: ['FILES_BREAKER_THRESHOLD'], kind: 'int' },
  breakerHalfOpen: { env: ['FILES_BREAKER_HALF_OPEN'], kind: 'duration' },
  storageUrl: { env: ['STORAGE_URL'], kind: 'string' },
  queueUrl: { env: ['QUEUE_URL'], kind: 'string' },
  databaseUrl: { env: ['DATABASE_URL'], kind: 'string' },
  contentOrigin: { env: ['FILES_CONTENT_ORIGIN'], kind: 'string' },
  tusExpiry: { env: ['FILES_TUS_EXPIRY'], kind: 'duration' },
  nodeName: { env: ['FILES_NODE_NAME'], kind: 'string' },
  metricsToken: { env: ['FILES_METRICS_TOKEN'], kind: 'string' },
  webhookUrl: { env: ['FILES_WEBHOOK_URL'], kind: 'string' },
  webhookSecret: { env: ['FILES_WEBHOOK_SECRET'], kind: 'string' },
  webhookOrigins: { env: ['FILES_WEBHOOK_ORIGINS'], kind: 'string' },
  webhookTimeout: { env: ['FILES_WEBHOOK_TIMEOUT'], kind: 'duration' },
  webhookAttempts: { env: ['FILES_WEBHOOK_ATTEMPTS'], kind: 'int' },
  processors: { env: ['FILES_PROCESSORS'], kind: 'processors' },
  imageVariants: { env: ['FILES_IMAGE_VARIANTS'], kind: 'variants' },
};

function defaults(env: NodeJS.ProcessEnv): FilesConfig {
  const threads = Number(env.WEFT_THREADS);
  return {
    port: 3000,
    host: '127.0.0.1',
    dataDir: resolve('data'),
    token: undefined,
    tokensFile: undefined,
    linkSecret: undefined,
    maxUpload: 1024 ** 3,
    uploadsPerMinute: 0,
    tenantQuota: 0,
    maxQueued: 10_000,
    maxEventLoopDelay: 500,
    maxAttempts: 5,
    leaseMs: 30_000,
    retryDelayMs: 1_000,
    jobTimeoutMs: 300_000,
    pollMs: 250,
    csvMaxBadRows: BUILT_IN_DEFAULTS.csvMaxBadRows,
    limitInputPixels: BUILT_IN_DEFAULTS.limitInputPixels,
    concurrency: Number.isInteger(threads) && threads > 0 ? threads : 1,
    shutdownTimeout: 30_000,
    uploadIdleTimeout: 30_000,
    uploadTimeout: 3_600_000,
    dbBusyTimeout: 5_000,
    queueTimeout: 1_000,
    databaseTimeout: 1_000,
    storageTimeout: 1_000,
    backendRetries: 2,
    tusExpiry: 86_400_000,
    breakerThreshold: 5,
    breakerHalfOpen: 2_000,
    storageUrl: undefined,
    queueUrl: undefined,
    databaseUrl: undefined,
    contentOrigin: undefined,
    webhookUrl: undefined,
    nodeName: undefined,
    metricsToken: undefined,
    webhookSecret: undefined,
    webhookOrigins: undefined,
    webhookTimeout: 10_000,
    webhookAttempts: 12,
    processors: [],
    imageVariants: BUILT_IN_DEFAULTS.imageVariants,
  };
}

const K = 1024;
const SIZES: Record<string, number> = {
  '': 1,
  b: 1,
  k: K,
  kb: K,
  kib: K,
  m: K ** 2,
  mb: K ** 2,
  mib: K ** 2,
};
Object.assign(SIZES, { g: K ** 3, gb: K ** 3, gib: K ** 3 });
const TIMES: Record<string, number> = { '': 1, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const WANT: Record<Kind, string> = {
  int: 'a whole number ≥ 0',
  size: 'a size like 100M, 1G or a number of bytes',
  duration: 'a duration like 30s, 500ms, 2m or a number of ms',
  string: 'a non-empty string',
  path: 'a non-empty path',
  processors: 'a list of processors',
  variants: 'a list of image copies',
};

function bad(key: string, source: string, want: string, value: unknown): FilesError {
  return new FilesError(
    'ERR_WEFT_FILES_CONFIG',
    `Setting "${key}" (${source}) must be ${want}; got ${JSON.stringify(value)}`,
  );
}

/** A URL with its password replaced, for messages. */
export function redact(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}

/** `https://host[:port]` with nothing after it (a trailing `/` is dropped), as the links are built on it. */
function origin(raw: string, key: 'contentOrigin' | 'webhookOrigins' = 'contentOrigin'): string {
  const want =
    'an origin like https://files-content.example.com (http or https, no path, query or credentials)';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw bad(key, 'config', want, raw);
  }
  const plain = url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password;
  if (!/^https?:$/.test(url.protocol) || !plain || /[?#]$/.test(raw)) throw bad(key, 'config', want, raw);
  return url.origin;
}

/**
 * The webhook settings, checked together: an http(s) URL without credentials (they would travel in every request;
 * put a token in its path or query instead), origins normalised, and a secret whenever a webhook can be sent.
 */
function checkWebhooks(config: FilesConfig): void {
  const raw = config.webhookUrl;
  if (raw !== undefined) {
    const want = 'an http:// or https:// URL without credentials';
    const url = URL.canParse(raw) ? new URL(raw) : undefined;
    if (!url || !/^https?:$/.test(url.protocol) || url.username || url.password)
      throw bad('webhookUrl', 'config', want, redact(raw));
    url.hash = '';
    config.webhookUrl = url.href;
  }
  if (config.webhookOrigins !== undefined) {
    const list = config.webhookOrigins.split(',').map((o) => o.trim());
    config.webhookOrigins = list
      .filter((o) => o !== '')
      .map((o) => origin(o, 'webhookOrigins'))
      .join(',');
  }
  const sends = config.webhookUrl !== undefined || Boolean(config.webhookOrigins);
  if (sends && config.webhookSecret === undefined) {
    throw bad(
      'webhookSecret',
      'config',
      'set (FILES_WEBHOOK_SECRET) when a webhook URL or origin is',
      undefined,
    );
  }
  if (config.webhookSecret !== undefined && config.webhookSecret.length < 16) {
    // The secret itself is never printed.
    throw bad(
      'webhookSecret',
      'config',
      'at least 16 characters',
      `${config.webhookSecret.length} characters`,
    );
  }
}

/** `12`, `1.5G`, `30s`: the number times its unit's factor; NaN when it is not one. */
function scaled(raw: unknown, units: Record<string, number>): number {
  if (typeof raw === 'number') return raw;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(String(raw).trim());
  const unit = m ? units[m[2]!.toLowerCase()] : undefined;
  return m && unit !== undefined ? Math.round(Number(m[1]) * unit) : Number.NaN;
}

/** A setting whose value is JSON: as it is in the config file, parsed from the text of an environment variable. */
function jsonFromEnv(key: keyof FilesConfig, source: string, raw: unknown, want: string): unknown {
  if (typeof raw !== 'string') return raw;
  try {
    return JSON.parse(raw);
  } catch {
    throw bad(key, source, want, raw);
  }
}

function parse(
  key: keyof FilesConfig,
  kind: Kind,
  raw: unknown,
  source: string,
  base: string,
): number | string | ProcessorConfig[] | ImageVariant[] {
  if (kind === 'variants') {
    const list = jsonFromEnv(key, source, raw, 'a JSON array of image copies');
    const problem = variantsProblem(list);
    if (problem) {
      throw new FilesError(
        'ERR_WEFT_FILES_CONFIG',
        `Setting "${key}" (${source}) ${problem}; got ${JSON.stringify(list)}`,
      );
    }
    return list as ImageVariant[];
  }
  if (kind === 'processors') {
    return parseProcessors(jsonFromEnv(key, source, raw, 'a JSON array of processors'), source, base);
  }
  if (kind === 'string' || kind === 'path') {
    if (typeof raw !== 'string' || raw === '') throw bad(key, source, WANT[kind], raw);
    return kind === 'path' ? resolve(raw) : raw;
  }
  const value = scaled(raw, kind === 'size' ? SIZES : kind === 'duration' ? TIMES : { '': 1 });
  if (!Number.isSafeInteger(value) || value < 0) throw bad(key, source, WANT[kind], raw);
  return value;
}

/**
 * Reads and validates the configuration.
 *
 * @example
 * ```ts
 * const config = loadConfig();            // defaults ← files.config.json ← FILES_* env
 * console.log(config.port, config.dataDir);
 * ```
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Readonly<FilesConfig> {
  const config = defaults(env);
  const file = env.FILES_CONFIG ? resolve(cwd, env.FILES_CONFIG) : resolve(cwd, 'files.config.json');
  if (env.FILES_CONFIG || existsSync(file)) {
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new FilesError(
        'ERR_WEFT_FILES_CONFIG',
        `Cannot read the config file ${file}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new FilesError('ERR_WEFT_FILES_CONFIG', `The config file ${file} must hold a JSON object`);
    }
    for (const [key, raw] of Object.entries(data)) {
      const setting = SETTINGS[key as keyof FilesConfig];
      if (!setting) {
        throw new FilesError(
          'ERR_WEFT_FILES_CONFIG',
          `Unknown setting "${key}" in ${file}; known: ${Object.keys(SETTINGS).join(', ')}`,
        );
      }
      Object.assign(config, {
        [key]: parse(key as keyof FilesConfig, setting.kind, raw, file, dirname(file)),
      });
    }
  }
  for (const [key, setting] of Object.entries(SETTINGS) as [
    keyof FilesConfig,
    (typeof SETTINGS)[keyof FilesConfig],
  ][]) {
    const name = setting.env.find((n) => env[n] !== undefined && env[n] !== '');
    if (name) Object.assign(config, { [key]: parse(key, setting.kind, env[name], `env ${name}`, cwd) });
  }
  if (config.port > 65_535) throw bad('port', 'config', 'a port number 0–65535', config.port);
  for (const key of [
    'maxUpload',
    'maxAttempts',
    'leaseMs',
    'jobTimeoutMs',
    'pollMs',
    'uploadIdleTimeout',
    'uploadTimeout',
    'queueTimeout',
    'databaseTimeout',
    'storageTimeout',
    'breakerThreshold',
    'breakerHalfOpen',
    'webhookTimeout',
    'webhookAttempts',
  ] as const) {
    if (config[key] < 1) throw bad(key, 'config', 'at least 1', config[key]);
  }
  if (config.concurrency < 0) throw bad('concurrency', 'config', 'at least 0', config.concurrency);
  if (config.queueUrl !== undefined && !/^(rediss?|amqps?):\/\//.test(config.queueUrl)) {
    throw bad(
      'queueUrl',
      'config',
      'a redis://, rediss://, amqp:// or amqps:// URL',
      redact(config.queueUrl),
    );
  }
  if (config.databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    throw bad('databaseUrl', 'config', 'a postgres:// URL', redact(config.databaseUrl));
  }
  if (config.contentOrigin !== undefined) config.contentOrigin = origin(config.contentOrigin);
  checkWebhooks(config);
  const clash = variantClash(config.imageVariants, config.processors);
  if (clash) throw bad('imageVariants', 'config', clash.problem, clash.name);
  return Object.freeze(config);
}

/** Whether a queue URL names RabbitMQ (else Redis). */
export function isAmqp(url: string): boolean {
  return /^amqps?:\/\//.test(url);
}
