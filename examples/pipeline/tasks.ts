import type { MessagePort } from 'node:worker_threads';
import type { TaskContext } from 'weftjs/pool/task';

/** What stage A sends last, so stage B can check it received everything. */
export interface End {
  done: true;
  chunks: number;
  items: number;
}
type Message = Float64Array<ArrayBuffer> | End;

export interface Summary {
  chunks: number;
  items: number;
  sum: number;
  min: number;
  max: number;
}

/**
 * Stage A: computes the squares of 1..items and streams them into `port` in chunks, each chunk moved (not
 * copied) with its buffer. Ends with an `End` message and closes its side of the channel.
 */
export function produce(
  port: MessagePort,
  items: number,
  chunkSize: number,
): { chunks: number; items: number } {
  let chunks = 0;
  for (let first = 1; first <= items; first += chunkSize) {
    const chunk = new Float64Array(Math.min(chunkSize, items - first + 1));
    for (let i = 0; i < chunk.length; i++) chunk[i] = (first + i) ** 2;
    port.postMessage(chunk, [chunk.buffer]);
    chunks++;
  }
  port.postMessage({ done: true, chunks, items } satisfies End);
  port.close();
  return { chunks, items };
}

/**
 * Stage B: consumes the chunks stage A sends into `port` and returns their summary. It settles when the `End`
 * message arrives; it fails if the channel closes first, or if the caller cancels it (`this.signal`).
 */
export function summarize(this: TaskContext, port: MessagePort): Promise<Summary> {
  const { signal } = this;
  return new Promise((resolve, reject) => {
    const summary: Summary = { chunks: 0, items: 0, sum: 0, min: Infinity, max: -Infinity };
    let finished = false;
    const finish = (error?: unknown) => {
      finished = true;
      signal.removeEventListener('abort', onAbort);
      port.close();
      if (error === undefined) resolve(summary);
      else reject(error);
    };
    const onAbort = () => finish(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    port.on('message', (message: Message) => {
      if (message instanceof Float64Array) {
        summary.chunks++;
        summary.items += message.length;
        for (const value of message) {
          summary.sum += value;
          if (value < summary.min) summary.min = value;
          if (value > summary.max) summary.max = value;
        }
      } else if (summary.chunks !== message.chunks || summary.items !== message.items) {
        finish(
          new Error(`Stage A sent ${message.chunks} chunks (${message.items} items), got ${summary.chunks}`),
        );
      } else {
        finish();
      }
    });
    port.on('close', () => {
      if (!finished) finish(new Error('Stage A closed the channel before its end message'));
    });
  });
}
