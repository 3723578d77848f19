import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { SuperviseOptions } from '../cluster/index.ts';
import { InvalidOptionError } from '../errors.ts';
import { DEFAULT_IGNORE, type WatchOptions } from './watch.ts';

/** `512M`, `1G`, `2048K` or plain bytes. */
export function parseSize(value: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]?)B?$/i.exec(value.trim());
  if (!m) throw new InvalidOptionError(option, 'a size like 512M, 1G or a number of bytes', value);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.round(Number(m[1]) * unit);
}

/** `30s`, `500ms`, `2m` or plain milliseconds. */
export function parseDuration(value: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/i.exec(value.trim());
  if (!m) throw new InvalidOptionError(option, 'a duration like 30s, 500ms, 2m or a number of ms', value);
  const unit = { ms: 1, s: 1000, m: 60_000 }[(m[2] ?? 'ms').toLowerCase() as 'ms' | 's' | 'm'];
  return Math.round(Number(m[1]) * unit);
}

export interface StartConfig extends SuperviseOptions {
  name: string;
  /** `--watch`: reload when a source file changes (development). */
  watch?: WatchOptions;
}

const FLAGS = {
  workers: { type: 'string', short: 'w' },
  name: { type: 'string', short: 'n' },
  'max-memory': { type: 'string' },
  'kill-timeout': { type: 'string' },
  'start-timeout': { type: 'string' },
  'crash-loop-retry': { type: 'string' },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  dashboard: { type: 'boolean' },
  'log-format': { type: 'string' },
  watch: { type: 'boolean' },
  'watch-path': { type: 'string', multiple: true },
  'watch-ignore': { type: 'string', multiple: true },
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
  follow: { type: 'boolean', short: 'f' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parses the command line: the command, its flags, and the application's own arguments after `--`. */
export function parseCommandLine(argv: string[]) {
  const dashdash = argv.indexOf('--');
  const own = dashdash >= 0 ? argv.slice(0, dashdash) : argv;
  const appArgs = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
  const { values, positionals } = parseArgs({
    args: own,
    options: FLAGS,
    allowPositionals: true,
    strict: true,
  });
  return { command: positionals[0], script: positionals[1], values, appArgs };
}

/**
 * Options for `weft start`, from (lowest to highest precedence) `weft.config.{json,js,mjs,ts}` in the working
 * directory or `--config`, `WEFT_*` environment variables, and flags.
 */
export async function startConfig(
  parsed: ReturnType<typeof parseCommandLine>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<StartConfig> {
  const file = await loadConfigFile(parsed.values.config);
  const pick = (flag: string | undefined, envName: string, fromFile: unknown): string | undefined =>
    flag ?? env[envName] ?? (fromFile === undefined ? undefined : String(fromFile));
  const script = parsed.script ?? (file.exec as string | undefined) ?? env.WEFT_SCRIPT;
  if (!script)
    throw new InvalidOptionError('script', 'the application script to run (weft start app.js)', script);
  const options: StartConfig = {
    ...(file as Partial<SuperviseOptions>),
    exec: resolve(script),
    name: pick(parsed.values.name, 'WEFT_NAME', file.name) ?? basename(script).replace(/\.[^.]+$/, ''),
    args: parsed.appArgs.length > 0 ? parsed.appArgs : ((file.args as string[] | undefined) ?? []),
  };
  const workers = pick(parsed.values.workers, 'WEFT_WORKERS', file.workers);
  if (workers !== undefined) {
    options.workers = workers === 'max' ? 'max' : Number(workers);
    if (workers !== 'max' && !/^\d+$/.test(workers))
      throw new InvalidOptionError('workers', "a number or 'max'", workers);
  }
  const maxMemory = pick(parsed.values['max-memory'], 'WEFT_MAX_MEMORY', file.maxMemory);
  if (maxMemory !== undefined) options.maxMemory = parseSize(maxMemory, 'max-memory');
  const killTimeout = pick(parsed.values['kill-timeout'], 'WEFT_KILL_TIMEOUT', file.killTimeout);
  if (killTimeout !== undefined) options.killTimeout = parseDuration(killTimeout, 'kill-timeout');
  const startTimeout = pick(parsed.values['start-timeout'], 'WEFT_START_TIMEOUT', file.startTimeout);
  if (startTimeout !== undefined) options.startTimeout = parseDuration(startTimeout, 'start-timeout');
  const retry = pick(parsed.values['crash-loop-retry'], 'WEFT_CRASH_LOOP_RETRY', undefined);
  if (retry !== undefined) {
    options.crashLoop = {
      ...(options.crashLoop ?? { max: 5, windowMs: 60_000 }),
      retryAfter: parseDuration(retry, 'crash-loop-retry'),
    };
  }
  const metricsPort = pick(parsed.values['metrics-port'], 'WEFT_METRICS_PORT', file.metricsPort);
  if (metricsPort !== undefined) {
    if (!/^\d{1,5}$/.test(metricsPort) || Number(metricsPort) > 65_535)
      throw new InvalidOptionError('metrics-port', 'a TCP port from 0 to 65535', metricsPort);
    options.metricsPort = Number(metricsPort);
  }
  const metricsHost = pick(parsed.values['metrics-host'], 'WEFT_METRICS_HOST', file.metricsHost);
  if (metricsHost !== undefined) options.metricsHost = metricsHost;
  const dashboard = pick(
    parsed.values.dashboard === true ? 'true' : undefined,
    'WEFT_DASHBOARD',
    file.dashboard,
  );
  if (dashboard !== undefined) {
    if (!/^(1|0|true|false)$/.test(dashboard))
      throw new InvalidOptionError('dashboard', 'true or false (1 or 0 in WEFT_DASHBOARD)', dashboard);
    options.dashboard = dashboard === '1' || dashboard === 'true';
  }
  const watchFile = file.watch as boolean | Partial<WatchOptions> | undefined;
  const watching =
    parsed.values.watch === true ||
    env.WEFT_WATCH === '1' ||
    env.WEFT_WATCH === 'true' ||
    watchFile === true ||
    (typeof watchFile === 'object' && watchFile !== null);
  delete (options as { watch?: unknown }).watch;
  if (watching) {
    const fromFile = typeof watchFile === 'object' && watchFile !== null ? watchFile : {};
    const paths = parsed.values['watch-path'] ?? fromFile.paths ?? [dirname(resolve(script))];
    const ignore = [...DEFAULT_IGNORE, ...(fromFile.ignore ?? []), ...(parsed.values['watch-ignore'] ?? [])];
    const debounceMs = fromFile.debounceMs ?? 300;
    if (!Array.isArray(paths) || paths.some((p) => typeof p !== 'string' || !existsSync(p)))
      throw new InvalidOptionError('watch-path', 'existing folders or files', paths);
    if (!Number.isInteger(debounceMs) || debounceMs < 0)
      throw new InvalidOptionError('watch.debounceMs', 'an integer number of ms >= 0', debounceMs);
    options.watch = { paths: paths.map((p) => resolve(p)), ignore, debounceMs };
  }
  return options;
}

async function loadConfigFile(explicit: string | undefined): Promise<Record<string, unknown>> {
  const candidates = explicit
    ? [resolve(explicit)]
    : ['weft.config.json', 'weft.config.js', 'weft.config.mjs', 'weft.config.ts'].map((f) =>
        join(process.cwd(), f),
      );
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    if (explicit) throw new InvalidOptionError('config', 'an existing file', explicit);
    return {};
  }
  const value = path.endsWith('.json')
    ? (JSON.parse(await readFile(path, 'utf8')) as unknown)
    : ((await import(pathToFileURL(path).href)) as { default?: unknown }).default;
  if (typeof value !== 'object' || value === null) throw new InvalidOptionError('config', 'an object', value);
  return value as Record<string, unknown>;
}
