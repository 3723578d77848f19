import type { Queueable } from './queue.ts';
import type { TransferListItem } from './transfer.ts';
import type { WorkerHandle } from './worker-handle.ts';

/** One call of `pool.run`, from the queue to its settlement. Internal. */
export class Task implements Queueable {
  readonly id: number;
  readonly name: string;
  args: unknown[] | undefined;
  readonly transfer: TransferListItem[] | undefined;
  readonly priority: number;
  readonly timeout: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
  /** `performance.now()` at `run()`. */
  readonly submitted: number;
  queued = false;
  /** The thread it was handed to, and its sequence number there (the thread counts the tasks it starts). */
  handle: WorkerHandle | undefined = undefined;
  seq = 0;
  timer: NodeJS.Timeout | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;

  constructor(
    id: number,
    name: string,
    args: unknown[],
    transfer: TransferListItem[] | undefined,
    priority: number,
    timeout: number,
    signal: AbortSignal | undefined,
    resolve: (value: unknown) => void,
    reject: (reason: unknown) => void,
    submitted: number,
  ) {
    this.id = id;
    this.name = name;
    this.args = args;
    this.transfer = transfer;
    this.priority = priority;
    this.timeout = timeout;
    this.signal = signal;
    this.resolve = resolve;
    this.reject = reject;
    this.submitted = submitted;
  }
}
