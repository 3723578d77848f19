/**
 * What `weft start` prints on a terminal: its own log and the workers' JSON log lines (pino's, the lifecycle's) as
 * readable lines, and a banner once the cluster serves. Off a terminal (a container, a file, a pipe) the lines stay
 * JSON, one object per line, for whatever collects them. Internal.
 */
import { styleText } from 'node:util';

/** `pretty` on a terminal, `json` otherwise; `--log-format` or `WEFT_LOG_FORMAT` chooses. */
export type LogFormat = 'pretty' | 'json';

const LEVELS: Record<number, [label: string, color: Parameters<typeof styleText>[0]]> = {
  10: ['TRACE', 'gray'],
  20: ['DEBUG', 'gray'],
  30: ['INFO ', 'green'],
  40: ['WARN ', 'yellow'],
  50: ['ERROR', 'red'],
  60: ['FATAL', ['red', 'bold']],
};

/** Keys every log line has, not repeated after the message. */
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'worker', 'v']);

/** Colours only where the stream is a terminal that takes them (`NO_COLOR`, `FORCE_COLOR` respected). */
function painter(stream: NodeJS.WriteStream) {
  return (format: Parameters<typeof styleText>[0], text: string) => styleText(format, text, { stream });
}

function clock(time: unknown): string {
  const d = typeof time === 'number' ? new Date(time) : new Date();
  return d.toTimeString().slice(0, 8);
}

function value(v: unknown): string {
  if (typeof v === 'string') return /\s/.test(v) || v === '' ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}

/**
 * One log line made readable: `12:04:31 INFO  files:0  files listening on 127.0.0.1:3000  port=3000`; an error's
 * stack follows, indented. A line that is not a JSON log object is returned as it is (with `source` before it).
 *
 * @example
 * ```ts
 * prettyLine('{"level":30,"time":1,"msg":"ready"}', 'files:0', process.stdout);
 * ```
 */
export function prettyLine(text: string, source: string, stream: NodeJS.WriteStream): string {
  const paint = painter(stream);
  let obj: Record<string, unknown>;
  try {
    const parsed: unknown = text.startsWith('{') ? JSON.parse(text) : undefined;
    if (
      typeof parsed !== 'object' ||
      parsed === null ||
      typeof (parsed as { level?: unknown }).level !== 'number'
    )
      return `${paint('gray', source)} ${text}`;
    obj = parsed as Record<string, unknown>;
  } catch {
    return `${paint('gray', source)} ${text}`;
  }
  const [label, color] = LEVELS[obj.level as number] ?? ['LOG  ', 'white'];
  const extras: string[] = [];
  let stack = '';
  for (const [k, v] of Object.entries(obj)) {
    if (HIDDEN.has(k) || v === undefined) continue;
    if (k === 'err' && typeof v === 'object' && v !== null) {
      const e = v as { message?: string; stack?: string };
      extras.push(`err=${value(e.message ?? '')}`);
      if (e.stack && (obj.level as number) >= 50)
        stack = `\n${e.stack
          .split('\n')
          .slice(1)
          .map((l) => `    ${l.trim()}`)
          .join('\n')}`;
      continue;
    }
    extras.push(`${k}=${value(v)}`);
  }
  const msg = typeof obj.msg === 'string' ? obj.msg : '';
  // A field whose value the message already says (`worker 1 ready  slot=1` stays; a URL said twice goes).
  for (let i = extras.length - 1; i >= 0; i--) {
    const v = extras[i]!.slice(extras[i]!.indexOf('=') + 1);
    if (v.length > 3 && msg.includes(v.replace(/^"|"$/g, ''))) extras.splice(i, 1);
  }
  const tail = extras.length ? `  ${paint('gray', extras.join(' '))}` : '';
  const trace = stack ? paint('gray', stack) : '';
  return `${paint('gray', clock(obj.time))} ${paint(color, label)} ${paint('cyan', source.padEnd(8))} ${msg}${tail}${trace}`;
}

/** What the banner says. */
export interface BannerInfo {
  name: string;
  workers: number;
  threads: number;
  /** Where the application listens, as URLs. */
  urls: string[];
  /** The supervisor's metrics endpoint, when on. */
  metricsUrl?: string;
  /** Whether the metrics endpoint serves the cluster's dashboard too. */
  dashboard: boolean;
}

/**
 * The lines `weft start` prints once every worker serves: where, how many, and what to type next.
 *
 * @example
 * ```ts
 * process.stdout.write(banner({ name: 'files', workers: 2, threads: 1, urls: ['http://localhost:3000'], dashboard: false }, process.stdout));
 * ```
 */
export function banner(info: BannerInfo, stream: NodeJS.WriteStream): string {
  const paint = painter(stream);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const where =
    info.urls.length > 0 ? info.urls.map((u) => paint(['bold', 'cyan'], u)).join('  ') : '(no port)';
  const lines = [
    '',
    `  ${paint('bold', `weft ▸ ${info.name}`)}  ${where}`,
    `  ${paint('gray', 'workers')}    ${plural(info.workers, 'worker')} × ${plural(info.threads, 'thread')}`,
  ];
  if (info.metricsUrl) {
    lines.push(`  ${paint('gray', 'metrics')}    ${info.metricsUrl}`);
    if (info.dashboard)
      lines.push(`  ${paint('gray', 'dashboard')}  ${info.metricsUrl.replace(/\/metrics$/, '/')}`);
  }
  lines.push(
    `  ${paint('gray', 'control')}    weft status --name ${info.name} · weft reload --name ${info.name} · Ctrl-C stops`,
    '',
  );
  return `${lines.join('\n')}\n`;
}
