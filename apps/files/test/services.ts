/**
 * The external services some tests need (Redis, PostgreSQL): their URLs come from the environment, defaulting to
 * this machine's local ports. When one does not answer, `serviceSkip` returns the reason to skip (printed once),
 * unless `WEFT_REQUIRE_SERVICES=1` (CI), where it throws and the test file fails.
 */
import { connect } from 'node:net';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const required = process.env.WEFT_REQUIRE_SERVICES === '1';

/** Resolves true when a TCP connection to `url`'s host and port opens within `ms`. */
function answers(url: string, ms = 2_000): Promise<boolean> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === 'redis:' ? 6379 : 5432));
  return new Promise((resolve) => {
    const socket = connect({ host: u.hostname, port });
    const done = (ok: boolean) => {
      socket.destroy();
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * `false` when every named service answers; else the reason to skip, printed. Under `WEFT_REQUIRE_SERVICES=1` a
 * missing service throws instead.
 *
 * @example
 * ```ts
 * const skip = await serviceSkip({ redis: REDIS_URL });
 * describe('the Redis bus', { skip }, () => { ... });
 * ```
 */
export async function serviceSkip(services: Record<string, string>): Promise<string | false> {
  const missing: string[] = [];
  for (const [name, url] of Object.entries(services)) {
    if (!(await answers(url))) missing.push(`${name} at ${new URL(url).host}`);
  }
  if (missing.length === 0) return false;
  const reason = `${missing.join(' and ')} did not answer`;
  if (required) throw new Error(`${reason}; WEFT_REQUIRE_SERVICES=1 forbids skipping`);
  console.log(`# skipped: ${reason} (set REDIS_URL / DATABASE_URL to point elsewhere)`);
  return reason;
}
