/**
 * What the NATS bus tests share: the server's URL (`NATS_URL`, default this machine's), whether to skip when it does
 * not answer (never under `WEFT_REQUIRE_SERVICES=1`), a stream and subject prefix of each test's own, and bounded
 * waits that say what they waited for.
 */
import { randomUUID } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { serviceSkip, within as withinMs } from '../helpers.ts';

export { eventually as until } from '../helpers.ts';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** `false` when NATS answers; else the reason to skip, printed. Under `WEFT_REQUIRE_SERVICES=1` it throws. */
export const natsSkip = (): Promise<string | false> => serviceSkip('NATS', NATS_URL, 4222, 'NATS_URL');

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

/** `promise`, or a rejection naming `what` after `ms` (test/helpers.ts's `within`, arguments in this file's order). */
export const within = <T>(what: string, promise: Promise<T>, ms = 10_000): Promise<T> =>
  withinMs(promise, ms, what);
