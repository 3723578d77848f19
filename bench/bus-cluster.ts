/**
 * The cluster scope of the `bus` area: two workers (bench/fixtures/bus-worker.mjs), worker 0 publishing and worker 1
 * subscribing, under `weft start --workers 2` (weftjs/bus, `clusterTransport()`, relayed by the supervisor) and under
 * a bare node:cluster primary relaying `process.send` messages (bench/fixtures/bus-raw-primary.mjs). Each runs in a
 * process group of its own for the whole scope; the benchmark drives both workers over a loopback TCP connection (the
 * "hub"), which also carries the subscriber's credits back to the publisher, so the same in-flight bound holds for
 * both.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ownGroup, within } from './lib/harness.ts';
import { killGroup } from './lib/process.ts';

const root = new URL('..', import.meta.url).pathname;
const WEFT = join(root, 'dist/cli/weft.js');
const WORKER = join(root, 'bench/fixtures/bus-worker.mjs');
const RAW = join(root, 'bench/fixtures/bus-raw-primary.mjs');

/** One run's result, as the subscriber measured it: events/s from first publish to last handled; latencies in ms. */
export interface RunResult {
  rate: number;
  p50: number;
  p99: number;
}

/** A started cluster: two workers waiting for runs. */
export interface ClusterSubject {
  /** Publishes `count` events with at most `window` unhandled; the subscriber credits every `ackEvery`. */
  run(count: number, window: number, ackEvery: number): Promise<RunResult>;
  stop(): Promise<void>;
}

type Message = { hello?: string; armed?: number; done?: number; error?: string; credit?: number } & RunResult;

interface Hub {
  server: Server;
  port: number;
  publisher: Promise<Socket>;
  subscriber: Promise<Socket>;
  /** Resolves with the next message of `kind` from the subscriber about run `id`. */
  next(kind: 'armed' | 'done', id: number): Promise<Message>;
}

async function openHub(): Promise<Hub> {
  const publisher = Promise.withResolvers<Socket>();
  const subscriber = Promise.withResolvers<Socket>();
  const waiting = new Map<string, PromiseWithResolvers<Message>>();
  const fail = (err: Error) => {
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
    publisher.reject(err);
    subscriber.reject(err);
  };
  publisher.promise.catch(() => {});
  subscriber.promise.catch(() => {});
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    createInterface({ input: socket }).on('line', (line) => {
      // Credits go straight on to the publisher: the only messages on the measured path.
      if (line.startsWith('{"credit"')) {
        void publisher.promise.then((p) => p.write(`${line}\n`));
        return;
      }
      const m = JSON.parse(line) as Message;
      if (m.hello === 'publisher') publisher.resolve(socket);
      else if (m.hello === 'subscriber') subscriber.resolve(socket);
      else if (m.error !== undefined) fail(new Error(m.error));
      else {
        const key = m.armed !== undefined ? `armed:${m.armed}` : `done:${m.done}`;
        waiting.get(key)?.resolve(m);
        waiting.delete(key);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as { port: number }).port,
    publisher: publisher.promise,
    subscriber: subscriber.promise,
    next(kind, id) {
      const w = Promise.withResolvers<Message>();
      waiting.set(`${kind}:${id}`, w);
      return w.promise;
    },
  };
}

/** Starts `weft start` (mode weft) or the raw primary, and waits until both workers are connected and subscribed. */
export async function startCluster(mode: 'weft' | 'raw'): Promise<ClusterSubject> {
  const hub = await openHub();
  const runtime = mkdtempSync(join(tmpdir(), 'weft-bench-bus-'));
  const args = mode === 'weft' ? [WEFT, 'start', WORKER, '--workers', '2', '--name', 'bench-bus'] : [RAW];
  const child: ChildProcess = spawn(process.execPath, args, {
    env: {
      ...process.env,
      BENCH_BUS_MODE: mode,
      BENCH_HUB_PORT: String(hub.port),
      WEFT_RUNTIME_DIR: runtime,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
    detached: true,
  });
  ownGroup(child);
  const stop = async () => {
    await killGroup(child, 15_000);
    hub.server.close();
    for (const s of [hub.publisher, hub.subscriber])
      void s.then(
        (socket) => socket.destroy(),
        () => {},
      );
    rmSync(runtime, { recursive: true, force: true });
  };
  try {
    const [publisher, subscriber] = await within(
      Promise.all([hub.publisher, hub.subscriber]),
      60_000,
      `${mode}: two workers to connect`,
    );
    let runs = 0;
    return {
      async run(count, window, ackEvery) {
        const id = ++runs;
        const armed = hub.next('armed', id);
        subscriber.write(`${JSON.stringify({ arm: id, count, ackEvery })}\n`);
        await within(armed, 10_000, `${mode}: the subscriber to arm`);
        const done = hub.next('done', id);
        publisher.write(`${JSON.stringify({ go: id, count, window })}\n`);
        const m = await within(done, 60_000, `${mode}: ${count} events`);
        return { rate: m.rate, p50: m.p50, p99: m.p99 };
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
