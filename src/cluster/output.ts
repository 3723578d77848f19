import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

/** Worker output lines kept for `weft logs`. */
const LOG_LINES = 1_000;

/** The workers' output (with `prefixOutput`): copied with slot prefixes, and its last lines kept. Internal. */
export class WorkerOutput {
  readonly #lines: string[] = [];
  readonly #onLine: (line: string) => void;

  /** `onLine` sees every prefixed line as it is written. */
  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  /** Copies a worker stream line by line with its slot prefix, and keeps the last lines for `weft logs`. */
  pipe(
    from: Readable | null | undefined,
    to: Writable,
    prefix: string,
    format?: (text: string, prefix: string) => string,
  ): void {
    if (!from) return;
    createInterface({ input: from, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (text) => {
      const line = `${prefix} ${text}`;
      to.write(`${format ? format(text, prefix) : line}\n`);
      this.#lines.push(line);
      if (this.#lines.length > LOG_LINES) this.#lines.shift();
      this.#onLine(line);
    });
  }

  /** The last lines the workers wrote (up to 1 000), oldest first. */
  lines(): string[] {
    return [...this.#lines];
  }
}
