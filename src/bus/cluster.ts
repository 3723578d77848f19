/**
 * The cluster transport: across the workers of one `weft start`, relayed by the supervisor over the IPC channels it
 * already has with them (src/cluster/bus-relay.ts is the supervisor's side). Payloads are copied (structured clone
 * by IPC's advanced serialization, JSON otherwise), never shared.
 *
 * - Fan-out: every worker with a subscription gets each event, in the order its publisher published.
 * - Groups: one member of the group, in any worker, handles each event; the supervisor keeps the event until that
 *   member acknowledges it (its handler settled) and gives it to another member when the first fails or its worker
 *   exits (a crash, a reload's retirement): at-least-once, `event.attempt` counting.
 * - `publish` resolves once the event is written to the supervisor's channel: a worker that exits right after still
 *   has it delivered.
 *
 * Outside a supervised worker (a plain `node app.js`, the supervisor itself), the cluster is this one process: the
 * transport delivers in-process, with the same API.
 * @module
 */
import { supervised } from '../cluster/ipc.ts';
import { ProcessTransport } from './process.ts';
import type { BusEvent, Deliver, Transport, TransportSubscription } from './types.ts';

/** Bus messages between a worker and the supervisor (under the `weft` key, as every Weft IPC message). */
export type BusWireMessage =
  | { weft: 'bus'; op: 'sub'; sub: number; name: string; group?: string }
  | { weft: 'bus'; op: 'unsub'; sub: number }
  | { weft: 'bus'; op: 'pub'; event: BusEvent }
  | { weft: 'bus'; op: 'ack'; key: number; ok: boolean }
  | { weft: 'bus'; op: 'deliver'; event: BusEvent; subs: number[]; key?: number };

/**
 * @example
 * ```ts
 * const bus = createBus<Events>({ transport: clusterTransport() });
 * bus.subscribe('orderPlaced', sendEmail, { group: 'email' }); // one worker sends each email
 * ```
 */
export class ClusterTransport implements Transport {
  readonly scope = 'cluster' as const;
  readonly #local: ProcessTransport | undefined;
  readonly #subs = new Map<number, Deliver>();
  #nextSub = 0;
  #seq = 0;
  #closed = false;
  readonly #onMessage = (msg: unknown) => {
    const m = msg as BusWireMessage;
    if (typeof m !== 'object' || m === null || m.weft !== 'bus' || m.op !== 'deliver') return;
    void this.#deliver(m.event, m.subs, m.key);
  };

  constructor() {
    if (!supervised()) {
      this.#local = new ProcessTransport();
      return;
    }
    process.on('message', this.#onMessage);
  }

  async #deliver(event: BusEvent, subs: number[], key: number | undefined): Promise<void> {
    let ok = true;
    for (const id of subs) {
      const deliver = this.#subs.get(id);
      if (!deliver) {
        ok = false; // unsubscribed meanwhile: another member takes it
        continue;
      }
      try {
        await deliver(event);
      } catch {
        ok = false; // reported by the bus
      }
    }
    if (key !== undefined && process.connected) this.#send({ weft: 'bus', op: 'ack', key, ok });
  }

  #send(msg: BusWireMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      process.send!(msg, undefined, {}, (err: Error | null) => (err ? reject(err) : resolve()));
    });
  }

  async publish(name: string, payload: unknown): Promise<string> {
    if (this.#local) return this.#local.publish(name, payload);
    const id = `${process.pid}:${++this.#seq}`;
    await this.#send({ weft: 'bus', op: 'pub', event: { id, name, payload, time: Date.now(), attempt: 1 } });
    return id;
  }

  async subscribe(s: TransportSubscription): Promise<() => Promise<void>> {
    if (this.#local) return this.#local.subscribe(s);
    const sub = ++this.#nextSub;
    this.#subs.set(sub, s.deliver);
    await this.#send({
      weft: 'bus',
      op: 'sub',
      sub,
      name: s.name,
      ...(s.group === undefined ? {} : { group: s.group }),
    });
    return async () => {
      this.#subs.delete(sub);
      if (process.connected) await this.#send({ weft: 'bus', op: 'unsub', sub }).catch(() => {});
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#local) return this.#local.close();
    process.off('message', this.#onMessage);
    for (const sub of [...this.#subs.keys()]) {
      this.#subs.delete(sub);
      if (process.connected) await this.#send({ weft: 'bus', op: 'unsub', sub }).catch(() => {});
    }
  }
}

/** A transport across the workers of one `weft start` (this process alone when not supervised). */
export function clusterTransport(): ClusterTransport {
  return new ClusterTransport();
}
