/**
 * The bus benchmark's process scope (bus.ts): each sample runs in a child process of its own (this file, with the
 * subject's index), so one subject's calls do not shape the JIT's view of another's (shared handlers and call sites
 * made the in-process figures swing by 2× from round to round). The child warms up, then measures `events` events in
 * a loop and `timed` events with their latency, and prints one JSON line: `{ rate, p50, p99 }` (ms).
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createBus } from 'weftjs/bus';
import type { RunResult } from './bus-cluster.ts';
import { within } from './lib/harness.ts';
import { percentile } from './lib/stats.ts';

type Payload = { n: number; t: number };
type Events = { count: Payload; timed: Payload };

export type Kind = 'ours' | 'floor' | 'info';

interface Subject {
  name: string;
  kind: Kind;
  goal?: number;
  /** Makes the emitter and returns the two loops: `n` events (ms taken), `n` timed events. */
  make(
    onCount: (p: Payload) => void,
    onTimed: (p: Payload) => void,
  ): {
    count(n: number): number | Promise<number>;
    timed(n: number): void | Promise<void>;
  };
}

export const PROCESS_SUBJECTS: readonly Subject[] = [
  {
    name: 'node:events `EventEmitter.emit`',
    kind: 'floor',
    make(onCount, onTimed) {
      const ee = new EventEmitter();
      ee.on('count', onCount);
      ee.on('timed', onTimed);
      return {
        count(n) {
          const t = performance.now();
          for (let i = 0; i < n; i++) ee.emit('count', { n: i, t: 0 });
          return performance.now() - t;
        },
        timed(n) {
          for (let i = 0; i < n; i++) ee.emit('timed', { n: i, t: performance.now() });
        },
      };
    },
  },
  {
    name: 'weftjs/bus `bus.emit`',
    kind: 'ours',
    goal: 0.9,
    make(onCount, onTimed) {
      const bus = createBus<Events>();
      bus.subscribe('count', onCount);
      bus.subscribe('timed', onTimed);
      return {
        count(n) {
          const t = performance.now();
          for (let i = 0; i < n; i++) bus.emit('count', { n: i, t: 0 });
          return performance.now() - t;
        },
        timed(n) {
          for (let i = 0; i < n; i++) bus.emit('timed', { n: i, t: performance.now() });
        },
      };
    },
  },
  {
    name: 'weftjs/bus `await bus.publish`',
    kind: 'info',
    make(onCount, onTimed) {
      const bus = createBus<Events>();
      bus.subscribe('count', onCount);
      bus.subscribe('timed', onTimed);
      return {
        async count(n) {
          const t = performance.now();
          for (let i = 0; i < n; i++) await bus.publish('count', { n: i, t: 0 });
          return performance.now() - t;
        },
        async timed(n) {
          for (let i = 0; i < n; i++) await bus.publish('timed', { n: i, t: performance.now() });
        },
      };
    },
  },
  {
    name: '`EventEmitter.emit` of a bus-like envelope (`String(++seq)` id, `Date.now()` time)',
    kind: 'info',
    make(onCount, onTimed) {
      interface Envelope {
        id: string;
        name: string;
        payload: Payload;
        time: number;
        attempt: number;
      }
      const ee = new EventEmitter();
      ee.on('count', (e: Envelope) => onCount(e.payload));
      ee.on('timed', (e: Envelope) => onTimed(e.payload));
      let seq = 0;
      return {
        count(n) {
          const t = performance.now();
          for (let i = 0; i < n; i++) {
            const payload = { n: i, t: 0 };
            ee.emit('count', { id: String(++seq), name: 'count', payload, time: Date.now(), attempt: 1 });
          }
          return performance.now() - t;
        },
        timed(n) {
          for (let i = 0; i < n; i++) {
            const payload = { n: i, t: performance.now() };
            ee.emit('timed', { id: String(++seq), name: 'timed', payload, time: Date.now(), attempt: 1 });
          }
        },
      };
    },
  },
];

/** In the child: warms `subject` up, measures it, and returns the figures. */
async function measure(subject: Subject, events: number, timed: number): Promise<RunResult> {
  let delivered = 0;
  let sum = 0;
  let timedAt = 0;
  const latency = new Float64Array(timed);
  const loops = subject.make(
    (p) => {
      delivered++;
      sum += p.n;
    },
    (p) => {
      latency[timedAt++] = performance.now() - p.t;
    },
  );
  // Warm-up: twice a tenth of the run, both loops, so that the measured loops run optimised code.
  for (let w = 0; w < 2; w++) {
    await loops.count(events / 10);
    timedAt = 0;
    await loops.timed(timed / 10);
  }
  delivered = 0;
  sum = 0;
  const ms = await loops.count(events);
  if (delivered !== events || sum !== (events * (events - 1)) / 2)
    throw new Error(`${subject.name}: ${delivered} of ${events} events delivered, or not their payloads`);
  timedAt = 0;
  await loops.timed(timed);
  if (timedAt !== timed) throw new Error(`${subject.name}: ${timedAt} of ${timed} timed events delivered`);
  const sorted = Array.from(latency).sort((a, b) => a - b);
  return { rate: events / (ms / 1000), p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

/** In the parent: one sample of subject `index` in a child process of its own, bounded by `ms`. */
export async function sample(index: number, events: number, timed: number, ms = 120_000): Promise<RunResult> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, new URL(import.meta.url).pathname, String(index), String(events), String(timed)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const code = await within(exited, ms, `the process-scope sample of ${PROCESS_SUBJECTS[index]!.name}`);
    if (code !== 0) throw new Error(`the sample exited with ${code}`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return JSON.parse(out.trim().split('\n').at(-1)!) as RunResult;
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const [index, events, timed] = process.argv.slice(2).map(Number) as [number, number, number];
  const subject = PROCESS_SUBJECTS[index];
  if (!subject) throw new Error(`no process subject ${index}`);
  process.stdout.write(`${JSON.stringify(await measure(subject, events, timed))}\n`);
}
