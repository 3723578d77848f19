/**
 * The `lifecycle` benchmark area: graceful shutdown under load. weft's `createLifecycle` + `addServer` against
 * @godaddy/terminus, http-terminator, close-with-grace and plain `server.close()`, each in its own child process.
 */
import { readFileSync } from 'node:fs';
import { type AreaOptions, alternate, type Series } from './lib/harness.ts';
import { fmt, median, table } from './lib/stats.ts';
import type { ClientMode } from './lifecycle-client.ts';
import {
  CONNECTIONS,
  HANDLER_MS,
  type Impl,
  KILL_AFTER_MS,
  type Sample,
  SIGTERM_AFTER_MS,
  trial,
} from './lifecycle-trial.ts';

/** The issue's exit target: the longest in-flight request plus 250 ms. */
const EXIT_LIMIT_MS = HANDLER_MS + 250;

function version(pkg: string): string {
  try {
    const url = new URL(`../node_modules/${pkg}/package.json`, import.meta.url);
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

const IMPLS: Impl[] = [
  {
    name: 'weft',
    role: 'subject',
    fixture: 'lifecycle-weft.ts',
    note: "`createLifecycle({ shutdownTimeout: 10_000, signals: ['SIGTERM'] })` + `addServer(server, { idleGrace: 200, drainDelay: 0 })`, exits by itself",
  },
  {
    name: `terminus ${version('@godaddy/terminus')}`,
    role: 'anchor',
    fixture: 'lifecycle-terminus.ts',
    note: '`createTerminus(server, { healthChecks, signal: SIGTERM, timeout: 1000, onSignal, onShutdown })`, its README options; re-raises SIGTERM when done',
  },
  {
    name: `http-terminator ${version('http-terminator')}`,
    role: 'anchor',
    fixture: 'lifecycle-http-terminator.ts',
    note: '`createHttpTerminator({ server })` (gracefulTerminationTimeout 1000 ms), `await terminate()` on SIGTERM, then `process.exit(0)`',
  },
  {
    name: `close-with-grace ${version('close-with-grace')}`,
    role: 'anchor',
    fixture: 'lifecycle-close-with-grace.ts',
    note: '`closeWithGrace({ delay: 10_000 }, () => server.close())`, its README usage',
  },
  {
    name: 'plain server.close()',
    role: 'baseline',
    fixture: 'lifecycle-plain.ts',
    note: '`process.once(SIGTERM, () => server.close())`, the process ends when its event loop is empty',
  },
];

const MODES: ClientMode[] = ['compliant', 'stock'];

interface Subject {
  name: string;
  impl: Impl;
  mode: ClientMode;
}

const killed = (s: Sample) => s.exitMs === undefined;
const exitOf = (s: Sample) => s.exitMs ?? Number.POSITIVE_INFINITY;
const refusedOf = (s: Sample) => s.client.refused + s.client.notAccepted;

function exitCell(ms: number): string {
  return Number.isFinite(ms) ? fmt(ms) : `killed at ${fmt(KILL_AFTER_MS)}`;
}

function resetCell(samples: Sample[]): string {
  const total = median(samples.map((s) => s.client.resets));
  const after = median(samples.map((s) => s.client.resetsAcceptedAfter));
  const how = new Map<string, number>();
  for (const s of samples)
    for (const [k, v] of Object.entries(s.client.resetHow)) how.set(k, (how.get(k) ?? 0) + v);
  const kinds = [...how.keys()].sort().join(', ');
  if (total === 0 && how.size === 0) return '0';
  return `${fmt(total)}${after > 0 ? ` (${fmt(after)} on connections accepted after SIGTERM)` : ''}${kinds ? `; ${kinds}` : ''}`;
}

function row(subject: Subject, series: Series<Sample>): string[] {
  const name = {
    subject: `**${subject.impl.name}**`,
    anchor: subject.impl.name,
    baseline: `${subject.impl.name} *`,
  }[subject.impl.role];
  const ss = series.samples;
  if (ss.length === 0) {
    const blanks = subject.mode === 'stock' ? 6 : 5;
    return [name, `failed: ${series.error ?? 'no samples'}`, ...Array<string>(blanks).fill('')];
  }
  const within = ss.filter((s) => !killed(s)).length;
  const statuses = [...new Set(ss.map((s) => s.exit))].join(', ');
  const note = series.error ? ` (stopped: ${series.error})` : '';
  const cells = [
    name,
    `${fmt(median(ss.map((s) => s.lost)))} of ${fmt(median(ss.map((s) => s.started)))}${note}`,
    resetCell(ss),
    fmt(median(ss.map(refusedOf))),
    exitCell(median(ss.map(exitOf))),
    `${within === ss.length ? 'yes' : within === 0 ? 'no' : 'sometimes'} (${within}/${ss.length}; exit ${statuses})`,
    ss.map((s) => `${s.lost} / ${s.client.resets} / ${exitCell(exitOf(s))}`).join('; '),
  ];
  if (subject.mode === 'stock') cells.splice(4, 0, fmt(median(ss.map((s) => s.client.afterClose))));
  return cells;
}

function modeTable(mode: ClientMode, results: Map<Subject, Series<Sample>>): string {
  const header = [
    'Implementation',
    'accepted-then-lost (of started)',
    'client resets',
    'refused (listener closed)',
    ...(mode === 'stock' ? ['sent after `Connection: close`'] : []),
    'SIGTERM→exit ms',
    'exited within 15 s',
    'per round: lost / resets / exit ms',
  ];
  const rows = [...results].filter(([s]) => s.mode === mode).map(([s, series]) => row(s, series));
  return table(header, rows);
}

interface Verdict {
  met: boolean;
  measured: string;
}

/** The issue's target, judged on every round of weft with the given client. */
function verdict(samples: Sample[]): Verdict {
  if (samples.length === 0) return { met: false, measured: 'weft failed' };
  const lost = Math.max(...samples.map((s) => s.lost));
  const resets = Math.max(...samples.map((s) => s.client.resets));
  const exits = samples.map(exitOf);
  const worst = Math.max(...exits);
  const met = lost === 0 && resets === 0 && worst <= EXIT_LIMIT_MS;
  return {
    met,
    measured: `lost ${lost}, resets ${resets} (most in a round); exit ${exitCell(median(exits))} ms median, ${exitCell(worst)} ms worst`,
  };
}

/** Runs the trials and returns the area's markdown, without its title and machine header. */
export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const subjects: Subject[] = MODES.flatMap((mode) =>
    IMPLS.map((impl) => ({ name: `${impl.name} (${mode})`, impl, mode })),
  );
  log(`${subjects.length} subjects × ${rounds} rounds`);
  const results = await alternate(
    subjects,
    rounds,
    async (subject) => {
      const s = await trial(subject.impl, subject.mode);
      log(
        `  ${subject.name}: lost ${s.lost}/${s.started}, resets ${s.client.resets}, refused ${refusedOf(s)}, ` +
          `after close ${s.client.afterClose}, exit ${exitCell(exitOf(s))} (${s.exit})`,
      );
      for (const line of s.detail.slice(0, subject.impl.role === 'subject' ? 20 : 2)) log(`    ${line}`);
      return s;
    },
    log,
  );
  const weft = (mode: ClientMode) => {
    const entry = [...results].find(([s]) => s.impl.role === 'subject' && s.mode === mode);
    return entry ? entry[1].samples : [];
  };
  const targetText = `0 accepted requests lost, 0 client resets, exit ≤ ${EXIT_LIMIT_MS} ms (longest in-flight request ${HANDLER_MS} ms + 250 ms), in every round`;
  const verdicts = MODES.map((mode) => ({ mode, ...verdict(weft(mode)) }));
  for (const v of verdicts)
    log(`  -> weft (${v.mode} client): target ${v.met ? 'met' : 'not met'}: ${v.measured}`);

  const examples: string[] = [];
  for (const [subject, series] of results) {
    if (subject.mode !== 'compliant') continue;
    const first = series.samples.find((s) => s.detail.length > 0);
    if (!first) continue;
    const limit = subject.impl.role === 'subject' ? 20 : 2;
    const lost = first.detail.filter((d) => d.startsWith('lost'));
    const resets = first.detail.filter((d) => d.startsWith('reset'));
    examples.push(
      `- ${subject.impl.name}, round ${series.samples.indexOf(first) + 1}: ${lost.length} lost requests, ${resets.length} reset connections, e.g.`,
      ...[...lost.slice(0, limit), ...resets.slice(0, limit)].map((d) => `  - ${d}`),
    );
  }

  return [
    `An HTTP server (\`node:http\`) whose handler answers after ${HANDLER_MS} ms runs in a child process per trial, so a real SIGTERM and a real exit are measured. ` +
      `autocannon keeps ${CONNECTIONS} keep-alive connections busy on 127.0.0.1 (one request at a time each; connection i opens ${HANDLER_MS / CONNECTIONS} × i ms after the start, so requests are at every stage when the signal comes). ` +
      `SIGTERM is sent ${SIGTERM_AFTER_MS / 1000} s after the load starts; the load goes on until the process has exited (+300 ms), and a process still running ${KILL_AFTER_MS / 1000} s after SIGTERM is killed with SIGKILL. ` +
      'Implementations alternate within each round, in a rotated order; tables give medians over rounds.',
    '',
    `Setups: ${IMPLS.map((i) => `${i.name}: ${i.note}`).join('; ')}. The row marked * is a baseline.`,
    '',
    "- **accepted-then-lost**: from the server's own log (one line per event, written synchronously to a pipe, so it survives SIGKILL): requests that reached the handler minus those whose response emitted `finish` with a 2xx status.",
    "- **client resets**: requests the client sent on a connection the server process had accepted (its `connection` event fired) and had not answered with `Connection: close`, that got no response because the connection was reset (ECONNRESET, EPIPE) or closed (`end`: the server's FIN with the request unanswered). Connections accepted after SIGTERM and dropped at once count here too, and are shown apart.",
    '- **refused**: requests on new connections after the listener closed: ECONNREFUSED, or reset from the listen backlog before the process accepted them. Expected, not an error.',
    "- **SIGTERM→exit**: measured by the parent, from `kill` to the child's `exit` event.",
    '',
    '### Targets',
    '',
    table(
      ['Client', 'Target', 'weft', 'Status'],
      verdicts.map((v) => [v.mode, targetText, v.measured, v.met ? '**met**' : '**not met**']),
    ),
    '',
    '### With a compliant client',
    '',
    "autocannon made to follow RFC 9112 §9.6, as Node's http Agent, undici and proxies do: after a response with `Connection: close` it opens a new connection for its next request instead of writing it to the one the server is closing; a refused connection is retried after 10 ms. This is the table the target is judged on.",
    '',
    modeTable('compliant', results),
    '',
    '### With stock autocannon',
    '',
    'autocannon as it is: it ignores `Connection: close` and writes its next request on the same connection as soon as it has read a response, so every graceful close races a request the client should not have sent; those requests are counted apart ("sent after `Connection: close`"), not as resets. Refused connections are retried at once, which keeps one core busy while the server drains.',
    '',
    modeTable('stock', results),
    '',
    ...(examples.length > 0
      ? ['### What was lost (compliant client; times from SIGTERM)', '', ...examples, '']
      : []),
  ].join('\n');
}
