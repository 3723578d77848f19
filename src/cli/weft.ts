#!/usr/bin/env node
/**
 * The `weft` command:
 *   weft start app.js [--workers N|max] [--name files] [--max-memory 512M] [--kill-timeout 30s] [-- app args]
 *   weft status [--json] | weft reload | weft stop | weft logs [--follow]      (each takes --name)
 */
import { basename } from 'node:path';
import {
  ControlServer,
  type SlotStatus,
  Supervisor,
  type SupervisorStatus,
  sendControl,
  socketPath,
} from '../cluster/index.ts';
import { InvalidOptionError, WeftError } from '../errors.ts';
import type { Logger } from '../lifecycle/index.ts';
import { parseCommandLine, startConfig } from './config.ts';
import { becomeInitChild } from './init.ts';
import { banner, type LogFormat, prettyLine } from './pretty.ts';
import { watchAndReload } from './watch.ts';

const USAGE = `Usage:
  weft start <app.js> [--workers N|max] [--name NAME] [--max-memory 512M] [--kill-timeout 30s]
                      [--start-timeout 30s] [--crash-loop-retry 30s] [--metrics-port 9464]
                      [--metrics-host 127.0.0.1]
                      [--dashboard] [--log-format pretty|json] [--config weft.config.json]
                      [--watch [--watch-path DIR]... [--watch-ignore NAME|*.EXT]...] [-- app args]
  weft status [--name NAME] [--json]
  weft reload [--name NAME]
  weft stop   [--name NAME]
  weft logs   [--name NAME] [--follow]`;

/** Exit codes a script can branch on; any other Weft error exits 2, anything else 1. */
const EXIT_CODES: Record<string, number> = { ERR_WEFT_NOT_RUNNING: 3, ERR_WEFT_CONTROL_DENIED: 4 };

/** How the log is written: readable on a terminal, JSON lines elsewhere (see pretty.ts). Set by `start`. */
let format: LogFormat = 'json';

/** The supervisor's own log on stdout (the CLI is the one place Weft writes to stdout). */
const logger: Logger = {
  info: (obj, msg) => line(30, obj, msg),
  warn: (obj, msg) => line(40, obj, msg),
  error: (obj, msg) => line(50, obj, msg),
};

function line(level: number, obj: object, msg?: string): void {
  const err = (obj as { err?: unknown }).err;
  const extra = err instanceof Error ? { err: { message: err.message, stack: err.stack } } : {};
  const json = JSON.stringify({ level, time: Date.now(), name: 'weft', msg, ...obj, ...extra });
  process.stdout.write(`${format === 'pretty' ? prettyLine(json, 'weft', process.stdout) : json}\n`);
}

async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv);
  if (parsed.values.help || !parsed.command) {
    process.stdout.write(`${USAGE}\n`);
    return parsed.command || parsed.values.help ? 0 : 2;
  }
  const name =
    parsed.values.name ?? (parsed.script ? basename(parsed.script).replace(/\.[^.]+$/, '') : 'app');
  switch (parsed.command) {
    case 'start':
      return start(parsed);
    case 'status':
      return status(parsed.values.name ?? name, parsed.values.json === true);
    case 'reload':
      return simple(parsed.values.name ?? name, 'reload');
    case 'stop':
      return simple(parsed.values.name ?? name, 'stop');
    case 'logs':
      await sendControl(
        parsed.values.name ?? name,
        { cmd: 'logs', follow: parsed.values.follow === true },
        (l) => process.stdout.write(`${String(l.line)}\n`),
      );
      return 0;
    default:
      process.stderr.write(`weft: unknown command "${parsed.command}"\n${USAGE}\n`);
      return 2;
  }
}

async function start(parsed: ReturnType<typeof parseCommandLine>): Promise<number> {
  // As a container's PID 1, re-executed under an init that reaps orphans; returns here only when it cannot be.
  const noInit = becomeInitChild();
  if (noInit)
    logger.warn({ reason: noInit }, `running as PID 1 without an init: orphans are not reaped (${noInit})`);
  const chosen = parsed.values['log-format'] ?? process.env.WEFT_LOG_FORMAT;
  if (chosen !== undefined && chosen !== 'pretty' && chosen !== 'json')
    throw new InvalidOptionError('log-format', "'pretty' or 'json'", chosen);
  format = (chosen as LogFormat | undefined) ?? (process.stdout.isTTY ? 'pretty' : 'json');
  const config = await startConfig(parsed);
  const path = socketPath(config.name);
  const formatOutput =
    format === 'pretty'
      ? (text: string, prefix: string) => prettyLine(text, prefix.slice(1, -1), process.stdout)
      : undefined;
  const { watch: watching, ...superviseOptions } = config;
  const supervisor = new Supervisor({ ...superviseOptions, logger, exit: false, formatOutput });
  // Heard from the start: a cluster that cannot start (a port in use) is over before start() resolves.
  let over: number | undefined;
  const exited = new Promise<number>((resolve) =>
    supervisor.once('exit', (code: number) => {
      over = code;
      resolve(code);
    }),
  );
  await supervisor.start();
  if (over !== undefined) process.exit(over);
  const control = new ControlServer(supervisor, path);
  await control.listen();
  logger.info({ socket: path }, `control socket ${path}`);
  const o = supervisor.options;
  const info = {
    name: o.name,
    workers: o.workers,
    threads: o.threads,
    urls: supervisor.urls,
    dashboard: o.dashboard,
    ...(supervisor.metricsUrl ? { metricsUrl: supervisor.metricsUrl } : {}),
  };
  if (format === 'pretty') process.stdout.write(banner(info, process.stdout));
  else logger.info(info, `${o.name} serving on ${info.urls.join(', ') || 'no port'}`);
  const unwatch = watching ? watchAndReload(supervisor, watching, logger) : undefined;
  const code = await exited;
  unwatch?.();
  await control.close();
  // The supervisor is done and its workers are gone: leave now rather than wait on stray handles.
  process.exit(code);
}

async function status(name: string, json: boolean): Promise<number> {
  let answer: SupervisorStatus | undefined;
  // --json also carries each worker's weft/metrics snapshot; the table stays as it is.
  await sendControl(name, { cmd: 'status', metrics: json }, (l) => {
    answer = l.status as SupervisorStatus;
  });
  if (!answer) throw new WeftError('ERR_WEFT_NOT_RUNNING', `The supervisor "${name}" did not answer`);
  if (json) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
  else process.stdout.write(table(answer));
  return 0;
}

async function simple(name: string, cmd: 'reload' | 'stop'): Promise<number> {
  let ok = false;
  await sendControl(name, { cmd }, (l) => {
    ok = l.ok === true;
    if (cmd === 'reload') {
      const r = l.result as { ok: boolean; replaced: number; reason?: string };
      process.stdout.write(
        r.ok ? `reloaded: ${r.replaced} workers replaced\n` : `reload failed: ${r.reason}\n`,
      );
    } else if (l.code !== undefined) process.stdout.write(`stopped (exit code ${String(l.code)})\n`);
  });
  return ok ? 0 : 1;
}

function table(s: SupervisorStatus): string {
  const rows: string[][] = [
    ['slot', 'pid', 'state', 'uptime', 'restarts', 'rss', 'loop p99', 'elu', 'req/s', 'last exit'],
  ];
  for (const slot of s.slots) rows.push(row(slot));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const text = rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
  const reload = s.lastReload
    ? `\nlast reload ${s.lastReload.at}: ${s.lastReload.ok ? 'ok' : `failed: ${s.lastReload.reason}`}`
    : '';
  return `${s.name} (pid ${s.pid}) ${s.state}\n${text}${reload}\n`;
}

function row(slot: SlotStatus): string[] {
  const st = slot.stats;
  return [
    String(slot.index),
    String(slot.pid ?? '-'),
    slot.state,
    `${Math.round(slot.uptime / 1000)}s`,
    String(slot.restarts),
    st ? `${Math.round(st.rss / 1024 / 1024)}M` : '-',
    st ? `${st.eventLoopDelayP99.toFixed(1)}ms` : '-',
    st ? `${Math.round(st.eventLoopUtilization * 100)}%` : '-',
    st ? st.requestsPerSecond.toFixed(1) : '-',
    slot.lastExit ?? '-',
  ];
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`weft: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}\n`);
    process.exitCode = EXIT_CODES[e.code ?? ''] ?? (e.code?.startsWith('ERR_') ? 2 : 1);
  },
);
