import type { SerializedError } from './protocol.ts';

const MAX_CAUSE_DEPTH = 8;

const constructors: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/**
 * Flattens an error (or any thrown value) so that `name`, `message`, `stack`, `code`, `cause` and own enumerable
 * properties survive `postMessage`. V8's own structured clone of errors drops `code` and custom properties.
 */
export function serializeError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error) || depth > MAX_CAUSE_DEPTH) return cloneable(err) ? err : String(err);
  const out: SerializedError = { __weftError: true, name: err.name, message: err.message };
  if (err.stack !== undefined) out.stack = err.stack;
  const withCode = err as Error & { code?: unknown };
  if (withCode.code !== undefined)
    out.code = cloneable(withCode.code) ? withCode.code : String(withCode.code);
  if ('cause' in err) out.cause = serializeError(err.cause, depth + 1);
  const props: Record<string, unknown> = {};
  let any = false;
  for (const key of Object.keys(err)) {
    if (key === 'code' || key === 'cause' || key === 'name' || key === 'message' || key === 'stack') continue;
    const value = (err as unknown as Record<string, unknown>)[key];
    if (cloneable(value)) {
      props[key] = value;
      any = true;
    }
  }
  if (any) out.props = props;
  return out;
}

/** Rebuilds an error serialized by {@link serializeError}; other values pass through. */
export function deserializeError(value: unknown): unknown {
  if (!isSerializedError(value)) return value;
  const Ctor = constructors[value.name] ?? Error;
  const err = new Ctor(value.message) as Error & Record<string, unknown>;
  if (err.name !== value.name) {
    Object.defineProperty(err, 'name', {
      value: value.name,
      enumerable: false,
      writable: true,
      configurable: true,
    });
  }
  if (value.stack !== undefined) err.stack = value.stack;
  if (value.code !== undefined) err.code = value.code;
  if ('cause' in value) err.cause = deserializeError(value.cause);
  if (value.props) Object.assign(err, value.props);
  return err;
}

function isSerializedError(value: unknown): value is SerializedError {
  return typeof value === 'object' && value !== null && (value as SerializedError).__weftError === true;
}

function cloneable(value: unknown): boolean {
  if (value === null) return true;
  const type = typeof value;
  if (type === 'function' || type === 'symbol') return false;
  if (type !== 'object') return true;
  try {
    structuredClone(value);
    return true;
  } catch {
    return false;
  }
}
