/**
 * The worker-side runtime: imports the task module, runs tasks from batches, sends results back in batches.
 * Internal; loaded by `new Worker()` from the pool.
 */
import { type MessagePort, parentPort, receiveMessageOnPort } from 'node:worker_threads';
import {
  type ControlMessage,
  ERROR,
  type InitMessage,
  OK,
  STATE_IN_SYNC,
  STATE_STARTED,
  type WorkerEvent,
} from './protocol.ts';
import { serializeError } from './serialize.ts';
import { isTransferred, type TransferListItem } from './transfer.ts';

/** What `this` is inside a task function. */
export interface TaskContext {
  /** Aborted when the caller cancels the task or it times out, so cooperative tasks can stop early. */
  readonly signal: AbortSignal;
  /** The task's id within its pool. */
  readonly taskId: number;
}

type TaskFunction = (this: TaskContext, ...args: unknown[]) => unknown;

/** Results not sent for this long are flushed even if more tasks of the batch remain. */
const FLUSH_AFTER_MS = 1;

class Context implements TaskContext {
  readonly taskId: number;
  #controller: AbortController | undefined;
  #aborted = false;

  constructor(taskId: number) {
    this.taskId = taskId;
  }

  get signal(): AbortSignal {
    // Created on first use: most tasks never look, and an AbortController per tiny task is measurable.
    this.#controller ??= new AbortController();
    if (this.#aborted && !this.#controller.signal.aborted) this.#controller.abort();
    return this.#controller.signal;
  }

  abort(): void {
    this.#aborted = true;
    this.#controller?.abort();
  }
}

if (!parentPort) throw new Error('weft/pool worker runtime must run in a worker thread');
const port: MessagePort = parentPort;

port.once('message', (init: InitMessage) => {
  void start(init);
});

async function start(init: InitMessage): Promise<void> {
  let mod: Record<string, unknown>;
  try {
    // The pool resolved the filename to a file: or data: URL at construction.
    mod = (await import(init.filename)) as Record<string, unknown>;
  } catch (err) {
    send({ type: 'loadError', error: serializeError(err) as never });
    port.close();
    return;
  }
  const runtime = new Runtime(init, mod);
  port.on('message', (batch: unknown[]) => runtime.enqueue(batch));
  init.control.on('message', (msg: ControlMessage) => runtime.control(msg));
  // The control port must not keep the thread alive on its own; the parent port does while the pool lives.
  init.control.unref();
  send({ type: 'ready' });
}

function send(event: WorkerEvent): void {
  port.postMessage(event);
}

class Runtime {
  readonly #mod: Record<string, unknown>;
  readonly #state: Int32Array;
  readonly #control: MessagePort;
  readonly #concurrency: number;
  readonly #recycleHeapUsed: number;
  /**
   * `v8.getHeapStatistics` when the pool sets `maxHeapUsed`, else undefined: `node:v8` is loaded only by the threads
   * that read it, not by every thread at its start.
   */
  readonly #heapStatistics: (() => import('node:v8').HeapInfo) | undefined;
  /** Flat local queue `[id, name, args, ...]` with a read index, so shifting costs nothing. */
  #queue: unknown[] = [];
  #head = 0;
  #started = 0;
  #running = 0;
  #cancelled = new Set<number>();
  #contexts = new Map<number, Context>();
  #out: unknown[] = [];
  #transfer: TransferListItem[] = [];
  #lastFlush = 0;
  #flushQueued = false;
  #recycleRequested = false;

  constructor(init: InitMessage, mod: Record<string, unknown>) {
    this.#mod = mod;
    this.#state = new Int32Array(init.state);
    this.#control = init.control;
    this.#concurrency = init.concurrency;
    this.#recycleHeapUsed = init.recycleHeapUsed;
    this.#heapStatistics =
      init.recycleHeapUsed > 0 ? process.getBuiltinModule('node:v8').getHeapStatistics : undefined;
  }

  enqueue(batch: unknown[]): void {
    if (this.#head === this.#queue.length) {
      this.#queue = batch;
      this.#head = 0;
    } else {
      for (const item of batch) this.#queue.push(item);
    }
    this.#pump();
  }

  control(msg: ControlMessage): void {
    if (msg.type !== 'cancel') return;
    const ctx = this.#contexts.get(msg.id);
    if (ctx) ctx.abort();
    else this.#cancelled.add(msg.id);
  }

  #drainControl(): void {
    for (let m = receiveMessageOnPort(this.#control); m; m = receiveMessageOnPort(this.#control)) {
      this.control(m.message as ControlMessage);
    }
  }

  #pump(): void {
    const q = this.#queue;
    this.#lastFlush = performance.now();
    while (this.#head < q.length && this.#running < this.#concurrency) {
      const id = q[this.#head] as number;
      const name = q[this.#head + 1] as string;
      const args = q[this.#head + 2] as unknown[];
      q[this.#head + 2] = undefined;
      this.#head += 3;
      // Cancellations of tasks queued here arrive on the control port while this loop holds the thread.
      this.#drainControl();
      this.#started = (this.#started + 1) | 0;
      Atomics.store(this.#state, STATE_STARTED, this.#started);
      if (this.#cancelled.delete(id)) continue;
      this.#run(id, name, args);
      if (performance.now() - this.#lastFlush >= FLUSH_AFTER_MS) this.#flush();
    }
    if (this.#head === q.length) {
      this.#queue = [];
      this.#head = 0;
    }
    this.#flush();
  }

  #run(id: number, name: string, args: unknown[]): void {
    const fn = this.#mod[name];
    const t0 = performance.now();
    if (typeof fn !== 'function') {
      this.#push(id, ERROR, unknownTask(name, this.#mod), 0);
      return;
    }
    const ctx = new Context(id);
    let result: unknown;
    Atomics.store(this.#state, STATE_IN_SYNC, this.#started || 1);
    try {
      result = (fn as TaskFunction).apply(ctx, args);
    } catch (err) {
      Atomics.store(this.#state, STATE_IN_SYNC, 0);
      this.#push(id, ERROR, serializeError(err), performance.now() - t0);
      return;
    }
    Atomics.store(this.#state, STATE_IN_SYNC, 0);
    if (!isThenable(result)) {
      this.#push(id, OK, result, performance.now() - t0);
      return;
    }
    this.#running++;
    this.#contexts.set(id, ctx);
    result.then(
      (value) => this.#settleAsync(id, OK, value, t0),
      (err) => this.#settleAsync(id, ERROR, serializeError(err), t0),
    );
  }

  #settleAsync(id: number, status: number, value: unknown, t0: number): void {
    this.#running--;
    this.#contexts.delete(id);
    this.#push(id, status, value, performance.now() - t0);
    if (this.#head < this.#queue.length) this.#pump();
    else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => {
        this.#flushQueued = false;
        this.#flush();
      });
    }
  }

  #push(id: number, status: number, value: unknown, ms: number): void {
    if (status === OK && isTransferred(value)) {
      for (const item of value.transferList) this.#transfer.push(item);
      value = value.value;
    }
    this.#out.push(id, status, value, Math.round(ms * 1000));
    if (this.#heapStatistics && !this.#recycleRequested) {
      const heapUsed = this.#heapStatistics().used_heap_size;
      if (heapUsed > this.#recycleHeapUsed) {
        this.#recycleRequested = true;
        this.#flush();
        send({ type: 'recycle', heapUsed });
      }
    }
  }

  #flush(): void {
    if (this.#out.length === 0) return;
    const out = this.#out;
    const list = this.#transfer;
    this.#out = [];
    this.#transfer = [];
    this.#lastFlush = performance.now();
    try {
      port.postMessage(out, list);
    } catch {
      // One uncloneable result must not sink the whole batch: resend one by one, and fail only the bad ones.
      for (let i = 0; i < out.length; i += 4) this.#sendOne(out, i, list);
    }
  }

  #sendOne(out: unknown[], i: number, list: TransferListItem[]): void {
    const one = out.slice(i, i + 4);
    try {
      port.postMessage(
        one,
        list.filter((item) => reachable(one[2], item)),
      );
    } catch (err) {
      const e = new Error((err as Error).message, { cause: err });
      (e as Error & { code: string }).code = 'ERR_WEFT_DATA_CLONE';
      port.postMessage([out[i], ERROR, serializeError(e), out[i + 3]]);
    }
  }
}

function reachable(value: unknown, item: unknown): boolean {
  if (value === item) return true;
  if (ArrayBuffer.isView(value)) return value.buffer === item;
  if (typeof value !== 'object' || value === null) return false;
  for (const v of Object.values(value)) if (reachable(v, item)) return true;
  return false;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

function unknownTask(name: string, mod: Record<string, unknown>): unknown {
  const names = Object.keys(mod).filter((k) => typeof mod[k] === 'function');
  const err = new Error(
    `Unknown task "${name}": the task module exports ${names.map((n) => `"${n}"`).join(', ') || 'no functions'}`,
  );
  (err as Error & { code: string }).code = 'ERR_WEFT_UNKNOWN_TASK';
  err.name = 'WeftError';
  return serializeError(err);
}
