/** A pino-compatible logger: Weft calls `logger.level(object, message)`. pino's own logger fits as it is. */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Used when no logger is given: warnings and errors as JSON lines on stderr (never stdout), nothing else. */
export const stderrLogger: Logger = {
  info() {},
  warn(obj, msg) {
    write(40, obj, msg);
  },
  error(obj, msg) {
    write(50, obj, msg);
  },
};

function write(level: number, obj: object, msg: string | undefined): void {
  const line = { level, time: Date.now(), pid: process.pid, name: 'weft', ...flatten(obj), msg };
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

function flatten(obj: object): object {
  const err = (obj as { err?: unknown }).err;
  if (!(err instanceof Error)) return obj;
  return { ...obj, err: { type: err.name, message: err.message, stack: err.stack } };
}
