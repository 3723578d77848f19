/**
 * What an open dashboard costs the server: the file service under `weft start --workers 2 --dashboard`, idle, its
 * CPU time (supervisor and every worker, all threads, from /proc, so the measuring costs the service nothing) over
 * windows with no page open, with one page's event stream open on the service (`/dashboard/events` on its port), and
 * with one open on the supervisor's metrics port. Windows alternate within each round; medians are printed.
 *
 *   node --conditions=weft-source bench/dashboard-cpu.ts        # BENCH_ROUNDS (3), BENCH_DASHBOARD_SECONDS (20)
 *
 * Linux only (/proc). The stream is read by this process, as a browser would hold it: one snapshot a second.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { get, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ownGroup } from './lib/harness.ts';
import { median, table } from './lib/stats.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WINDOW_S = Number(process.env.BENCH_DASHBOARD_SECONDS ?? 20);
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const root = new URL('../', import.meta.url).pathname;

/** CPU time (ms) of `pid`, every thread, from /proc/<pid>/stat (utime + stime). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICK;
}

/** The supervisor and its children. */
function tree(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((t) =>
    readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
  );
  return [pid, ...children];
}

function open(url: string): Promise<{ res: IncomingMessage; events: () => number }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let events = 0;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        events += chunk.split('event: snapshot').length - 1;
      });
      resolve({ res, events: () => events });
    }).on('error', reject);
  });
}

async function main(): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'bench-dashboard-'));
  const port = 30_000 + (process.pid % 20_000);
  const env = {
    ...process.env,
    PORT: String(port),
    FILES_DATA_DIR: join(base, 'data'),
    FILES_LOG_LEVEL: 'warn',
    WEFT_RUNTIME_DIR: join(base, 'run'),
  };
  const args = [
    '--conditions=weft-source',
    join(root, 'src/cli/weft.ts'),
    'start',
    join(root, 'apps/files/src/server.ts'),
  ];
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...args,
      '--workers',
      '2',
      '--name',
      `bench-dashboard-${process.pid}`,
      '--metrics-port',
      '0',
      '--dashboard',
    ],
    { env, stdio: ['ignore', 'pipe', 'inherit'], detached: true },
  );
  ownGroup(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
  });
  try {
    const deadline = Date.now() + 60_000;
    while ((out.match(/"worker \d ready"/g) ?? []).length < 2) {
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`the service did not start:\n${out}`);
      await sleep(50);
    }
    const supervisorPage = /"dashboard":"(http:[^"]+)"/.exec(out)![1]!;
    const subjects = [
      { name: 'no page open', url: undefined },
      {
        name: 'one page open on the service (port of the app)',
        url: `http://127.0.0.1:${port}/dashboard/events`,
      },
      { name: 'one page open on the supervisor (metrics port)', url: `${supervisorPage}dashboard/events` },
    ];
    await sleep(5_000); // start-up work (module loading, first GCs) out of the windows
    const results = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of [...subjects.slice(round % 3), ...subjects.slice(0, round % 3)]) {
        const stream = s.url ? await open(s.url) : undefined;
        await sleep(2_000); // the first snapshot and the bus subscription settle before the window
        const pids = tree(child.pid!);
        const before = pids.map(cpuMs);
        const t0 = performance.now();
        const seen = stream?.events() ?? 0;
        await sleep(WINDOW_S * 1000);
        const wall = performance.now() - t0;
        const each = pids.map((pid, i) => ((cpuMs(pid) - before[i]!) / wall) * 100);
        const pct = each.reduce((a, b) => a + b, 0);
        results.get(s.name)!.push(pct);
        const events = stream ? `, ${stream.events() - seen} snapshots` : '';
        const split = each.map((x) => x.toFixed(2)).join(' + ');
        process.stderr.write(
          `round ${round + 1}: ${s.name}: ${pct.toFixed(2)} % of one core (${split}${events})\n`,
        );
        stream?.res.destroy();
        await sleep(500);
      }
    }
    const idle = median(results.get(subjects[0]!.name)!);
    const rows = subjects.map((s) => {
      const m = median(results.get(s.name)!);
      return [s.name, `${m.toFixed(2)} %`, s.url ? `+${(m - idle).toFixed(2)} %` : '—'];
    });
    process.stdout.write(
      `${table(['subject', 'CPU of the whole service (median)', 'cost of the open page'], rows)}\n\n` +
        `${ROUNDS} rounds of ${WINDOW_S} s, ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} load after\n`,
    );
  } finally {
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
    rmSync(base, { recursive: true, force: true });
  }
}

await main();
