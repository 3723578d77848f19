/**
 * One adapter per pool implementation, so every benchmark drives weft, the anchors and the raw baseline through the
 * same calls. Every pool has exactly {@link THREADS} threads, started at construction where the library allows it.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { FixedThreadPool } from 'poolifier';
import { Tinypool } from 'tinypool';
import { Pool } from 'weftjs/pool';
import workerpool from 'workerpool';
import type * as WeftTasks from './fixtures/weft-tasks.ts';

export const THREADS = 2;

/** A live pool, seen through the calls the benchmarks make. */
export interface Runner {
  add(a: number, b: number): Promise<number>;
  spin(ms: number): Promise<number>;
  /** Sends `bytes` with its buffer in the transfer list (where supported); the task returns it, moved back if it can. */
  echoBytes(bytes: Uint8Array): Promise<Uint8Array>;
  /** Asks the thread whether the buffer it last returned was detached there (moved) or is still whole (copied). */
  lastDetached(): Promise<boolean>;
  close(): Promise<void>;
}

export interface Impl {
  readonly name: string;
  /** weft is measured; anchors are the libraries it is compared with; the baseline is hand-written. */
  readonly role: 'subject' | 'anchor' | 'baseline';
  /** How buffers go each way, as the library documents it (the benchmark checks it). */
  readonly note: string;
  create(): Runner;
}

const fixture = (file: string): URL => new URL(`./fixtures/${file}`, import.meta.url);

const weft: Impl = {
  name: 'weft',
  role: 'subject',
  note: '`transfer: [buffer]` in, `transfer(value, [buffer])` out',
  create() {
    const pool = new Pool<typeof WeftTasks>({
      filename: fixture('weft-tasks.ts'),
      minThreads: THREADS,
      maxThreads: THREADS,
      eager: true,
    });
    return {
      add: (a, b) => pool.run('add', [a, b]),
      spin: (ms) => pool.run('spin', [ms]),
      echoBytes: (bytes) => pool.run('echoBytes', [bytes], { transfer: [bytes.buffer as ArrayBuffer] }),
      lastDetached: () => pool.run('lastDetached'),
      close: () => pool.close(),
    };
  },
};

const piscina: Impl = {
  name: 'piscina',
  role: 'anchor',
  note: '`Piscina.move` both ways',
  create() {
    const pool = new Piscina({
      filename: fileURLToPath(fixture('piscina-tasks.ts')),
      minThreads: THREADS,
      maxThreads: THREADS,
    });
    return {
      add: (a, b) => pool.run([a, b], { name: 'add' }),
      spin: (ms) => pool.run(ms, { name: 'spin' }),
      echoBytes: (bytes) => pool.run(Piscina.move(bytes), { name: 'echoBytes' }),
      lastDetached: () => pool.run(null, { name: 'lastDetached' }),
      close: () => pool.close(),
    };
  },
};

const tinypool: Impl = {
  name: 'tinypool',
  role: 'anchor',
  note: '`Tinypool.move` both ways',
  create() {
    const pool = new Tinypool({
      filename: fixture('tinypool-tasks.ts').href,
      minThreads: THREADS,
      maxThreads: THREADS,
    });
    return {
      add: (a, b) => pool.run([a, b], { name: 'add' }),
      spin: (ms) => pool.run(ms, { name: 'spin' }),
      echoBytes: (bytes) => pool.run(Tinypool.move(bytes), { name: 'echoBytes' }),
      lastDetached: () => pool.run(null, { name: 'lastDetached' }),
      close: () => pool.destroy(),
    };
  },
};

const workerpoolImpl: Impl = {
  name: 'workerpool',
  role: 'anchor',
  note: '`transfer` exec option in, `workerpool.Transfer` out',
  create() {
    const pool = workerpool.pool(fileURLToPath(fixture('workerpool-tasks.ts')), {
      minWorkers: THREADS,
      maxWorkers: THREADS,
      workerType: 'thread',
    });
    return {
      add: (a, b) => pool.exec('add', [a, b]) as Promise<number>,
      spin: (ms) => pool.exec('spin', [ms]) as Promise<number>,
      echoBytes: (bytes) =>
        pool.exec('echoBytes', [bytes], { transfer: [bytes.buffer] }) as Promise<Uint8Array>,
      lastDetached: () => pool.exec('lastDetached', []) as Promise<boolean>,
      close: async () => {
        await pool.terminate();
      },
    };
  },
};

const poolifier: Impl = {
  name: 'poolifier',
  role: 'anchor',
  note: '`transferList` in; results are always copied out',
  create() {
    const pool = new FixedThreadPool<unknown, unknown>(THREADS, fileURLToPath(fixture('poolifier-tasks.ts')));
    return {
      add: (a, b) => pool.execute([a, b], 'add') as Promise<number>,
      spin: (ms) => pool.execute(ms, 'spin') as Promise<number>,
      echoBytes: (bytes) =>
        pool.execute(bytes, 'echoBytes', undefined, [bytes.buffer as ArrayBuffer]) as Promise<Uint8Array>,
      lastDetached: () => pool.execute(null, 'lastDetached') as Promise<boolean>,
      close: async () => {
        // poolifier 5.3.2's destroy() now and then never settles although all its threads have exited (about 1
        // close in 20-40 here), so it counts as closed once it has no worker node left.
        const destroyed = pool.destroy().then(() => true);
        while (!(await Promise.race([destroyed, delay(20, false)])) && pool.info.workerNodes > 0) {}
      },
    };
  },
};

/** Hand-written floor: {@link THREADS} workers fed round-robin, one `postMessage` per task each way. */
const raw: Impl = {
  name: 'raw postMessage',
  role: 'baseline',
  note: 'transfer list both ways',
  create() {
    const workers = Array.from({ length: THREADS }, () => new Worker(fixture('raw-worker.ts')));
    const pending = new Map<number, (value: unknown) => void>();
    for (const w of workers) {
      w.on('message', ([id, value]: [number, unknown]) => {
        const resolve = pending.get(id);
        pending.delete(id);
        resolve?.(value);
      });
    }
    let nextId = 0;
    let lastEcho = 0;
    const call = <T>(op: string, arg: unknown, list?: ArrayBuffer[], worker = nextId % THREADS): Promise<T> =>
      new Promise<T>((resolve) => {
        const id = nextId++;
        pending.set(id, resolve as (value: unknown) => void);
        workers[worker]!.postMessage([id, op, arg], list);
      });
    return {
      add: (a, b) => call('add', [a, b]),
      spin: (ms) => call('spin', ms),
      echoBytes: (bytes) => {
        lastEcho = nextId % THREADS;
        return call('echoBytes', bytes, [bytes.buffer as ArrayBuffer]);
      },
      lastDetached: () => call('lastDetached', null, undefined, lastEcho),
      close: async () => {
        await Promise.all(workers.map((w) => w.terminate()));
      },
    };
  },
};

/** In the order of the first round; later rounds rotate it. */
export const IMPLS: readonly Impl[] = [weft, piscina, tinypool, workerpoolImpl, poolifier, raw];
