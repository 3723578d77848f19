import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import type { ResolvedPoolOptions } from './options.ts';
import { type InitMessage, STATE_CELLS, STATE_IN_SYNC, STATE_STARTED } from './protocol.ts';
import type { Task } from './task.ts';

// In the source tree (tests, `--conditions=weft-source`) the runtime is TypeScript; in dist it is compiled.
const runtimeUrl = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

/** The main-side view of one worker thread. Internal. */
export class WorkerHandle {
  readonly worker: Worker;
  readonly threadId: number;
  readonly #state: Int32Array;
  readonly #control: MessagePort;
  /** Tasks handed to this thread and not settled, in hand-over order. */
  readonly inflight = new Map<number, Task>();
  /** Tasks given up on (cancelled, timed out) whose thread may still be running them: id → grace timer. */
  readonly zombies = new Map<number, NodeJS.Timeout | undefined>();
  /** Sequence number of the last task handed over (wraps like the thread's counter). */
  seq = 0;
  ready = false;
  /** Takes no new tasks; ends when its in-flight tasks are done. */
  retiring = false;
  /** `terminate()` was called by the pool: its exit is not a crash. */
  terminating = false;
  exited = false;
  tasksDone = 0;
  /** Tasks ever handed to this thread (for `maxTasksPerWorker`). */
  handedOver = 0;
  /** The error of the thread's `error` event, the cause of its crash. */
  error: unknown = undefined;
  idleTimer: NodeJS.Timeout | undefined = undefined;
  /** Why the pool ended it (`idle`, `recycled`, `cancelled`, `timeout`, `closed`), or `crashed`, `load-failed`. */
  exitReason: string | undefined = undefined;
  referenced = true;

  constructor(options: ResolvedPoolOptions) {
    const { port1, port2 } = new MessageChannel();
    const state = new SharedArrayBuffer(STATE_CELLS * 4);
    this.#state = new Int32Array(state);
    this.#control = port1;
    this.worker = new Worker(runtimeUrl, {
      workerData: options.workerData,
      resourceLimits: options.resourceLimits,
      ...(options.execArgv ? { execArgv: options.execArgv } : {}),
      ...(options.env ? { env: options.env } : {}),
    });
    this.threadId = this.worker.threadId;
    const init: InitMessage = {
      type: 'init',
      filename: options.filename,
      state,
      control: port2,
      concurrency: options.concurrentTasksPerWorker,
      recycleHeapUsed: options.maxHeapUsed,
    };
    this.worker.postMessage(init, [port2]);
    // The control port never keeps the process alive; the Worker's own ref does while tasks are in flight.
    port1.unref();
  }

  /** True when the thread has started the task with this sequence number (it may have finished it). */
  hasStarted(seq: number): boolean {
    return ((Atomics.load(this.#state, STATE_STARTED) - seq) | 0) >= 0;
  }

  /** True when the thread is inside the synchronous part of this task now, where no message reaches it. */
  isInSync(seq: number): boolean {
    return Atomics.load(this.#state, STATE_IN_SYNC) === (seq || 1);
  }

  cancel(id: number): void {
    this.#control.postMessage({ type: 'cancel', id });
  }

  ref(): void {
    if (!this.referenced) {
      this.referenced = true;
      this.worker.ref();
    }
  }

  unref(): void {
    if (this.referenced) {
      this.referenced = false;
      this.worker.unref();
    }
  }

  terminate(): void {
    this.terminating = true;
    this.retiring = true;
    clearTimeout(this.idleTimer);
    for (const timer of this.zombies.values()) clearTimeout(timer);
    this.zombies.clear();
    this.#control.close();
    void this.worker.terminate();
  }
}
