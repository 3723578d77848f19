/**
 * What the NATS bus tests share: the server's URL (`NATS_URL`, default this machine's), whether to skip when it does
 * not answer (never under `WEFT_REQUIRE_SERVICES=1`), a stream and subject prefix of each test's own, and bounded
 * waits that say what they waited for.
 */
import { randomUUID } from 'node:crypto';
import { connect as tcp } from 'node:net';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** Resolves true when a TCP connection to `url` opens within `ms`. */
function answers(url: string, ms = 2_000): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = tcp({ host: u.hostname, port: Number(u.port || 4222) });
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

/** `false` when NATS answers; else the reason to skip, printed. Under `WEFT_REQUIRE_SERVICES=1` it throws. */
export async function natsSkip(): Promise<string | false> {
  if (await answers(NATS_URL)) return false;
  const reason = `NATS at ${new URL(NATS_URL).host} did not answer`;
  if (process.env.WEFT_REQUIRE_SERVICES === '1')
    throw new Error(`${reason}; WEFT_REQUIRE_SERVICES=1 forbids skipping`);
  console.log(`# skipped: ${reason} (set NATS_URL to point elsewhere)`);
  return reason;
}

/** A connection of its own ("a machine"). */
export function connectNats(): Promise<NatsConnection> {
  return connect({ servers: NATS_URL, name: 'weft-bus-test' });
}

/** A stream name and subject prefix no other test uses. */
export function uniqueBus(): { stream: string; subjectPrefix: string } {
  const id = randomUUID().replaceAll('-', '').slice(0, 12);
  return { stream: `WEFT_TEST_${id}`, subjectPrefix: `weft.test.${id}` };
}

/** Deletes `stream` if it exists. */
export async function deleteStream(nc: NatsConnection, stream: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(stream).catch(() => {});
}

/** Polls `check` every 20 ms until it is true; fails naming `what` after `ms`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `promise`, or a rejection naming `what` after `ms`. */
export async function within<T>(what: string, promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
