/**
 * The supervisor's side of `weftjs/bus`'s cluster transport (src/bus/cluster.ts): it knows every worker's
 * subscriptions and relays each published event to them. Internal.
 *
 * - Fan-out: one message per worker with a subscription, listing its subscriptions; a worker's IPC channel keeps
 *   the order in which the supervisor sends, and the supervisor handles a publisher's messages in the order they
 *   were written, so each subscriber sees a publisher's events in publish order.
 * - Groups: each event goes to one member (the members of all workers take turns) and is kept until its ack. A
 *   failed delivery (nack) or a member whose worker exits before acking gives it to another member (attempt + 1),
 *   up to `maxAttempts`; with no member at all, events wait (up to `maxWaiting` per group, oldest dropped first and
 *   logged) for one to subscribe: a rolling reload, whose new workers subscribe before the old ones leave, loses none.
 */
import type { Worker } from 'node:cluster';
import type { BusWireMessage } from '../bus/cluster.ts';
import type { BusEvent } from '../bus/types.ts';
import type { Logger } from '../lifecycle/index.ts';
import { sendTo } from './ipc.ts';

interface Sub {
  worker: Worker;
  sub: number;
  name: string;
  group: string | undefined;
}

interface InFlight {
  event: BusEvent;
  group: string;
  member: Sub;
}

export class BusRelay {
  readonly #subs = new Set<Sub>();
  readonly #byWorker = new Map<Worker, Map<number, Sub>>();
  readonly #turn = new Map<string, number>();
  readonly #inflight = new Map<number, InFlight>();
  readonly #waiting = new Map<string, BusEvent[]>();
  #key = 0;
  readonly #log: Logger;
  readonly #maxAttempts: number;
  readonly #maxWaiting: number;

  constructor(log: Logger, options: { maxAttempts?: number; maxWaiting?: number } = {}) {
    this.#log = log;
    this.#maxAttempts = options.maxAttempts ?? 10;
    this.#maxWaiting = options.maxWaiting ?? 10_000;
  }

  /** Handles a worker's bus message; false when it is not one. */
  onMessage(worker: Worker, msg: unknown): boolean {
    const m = msg as BusWireMessage;
    if (typeof m !== 'object' || m === null || m.weft !== 'bus') return false;
    if (m.op === 'sub') this.#subscribe(worker, m.sub, m.name, m.group);
    else if (m.op === 'unsub') this.#unsubscribe(worker, m.sub);
    else if (m.op === 'pub') this.#publish(m.event);
    else if (m.op === 'ack') this.#ack(m.key, m.ok);
    return true;
  }

  /** A worker exited or disconnected: its subscriptions end, and what it held unacknowledged goes to another member. */
  workerGone(worker: Worker): void {
    const mine = this.#byWorker.get(worker);
    if (!mine) return;
    this.#byWorker.delete(worker);
    for (const s of mine.values()) this.#subs.delete(s);
    for (const [key, f] of this.#inflight) {
      if (f.member.worker !== worker) continue;
      this.#inflight.delete(key);
      this.#toGroup({ ...f.event, attempt: f.event.attempt + 1 }, f.group, f.event.name);
    }
  }

  #subscribe(worker: Worker, sub: number, name: string, group: string | undefined): void {
    const s: Sub = { worker, sub, name, group };
    let mine = this.#byWorker.get(worker);
    if (!mine) {
      mine = new Map();
      this.#byWorker.set(worker, mine);
    }
    mine.set(sub, s);
    this.#subs.add(s);
    if (group !== undefined) {
      const key = `${name}\u0000${group}`;
      const waiting = this.#waiting.get(key);
      if (waiting) {
        this.#waiting.delete(key);
        for (const event of waiting) this.#toGroup(event, group, name);
      }
    }
  }

  #unsubscribe(worker: Worker, sub: number): void {
    const s = this.#byWorker.get(worker)?.get(sub);
    if (!s) return;
    this.#byWorker.get(worker)!.delete(sub);
    this.#subs.delete(s);
  }

  #publish(event: BusEvent): void {
    // Fan-out: each worker once, with the list of its subscriptions to the name.
    const fanout = new Map<Worker, number[]>();
    const groups = new Set<string>();
    for (const s of this.#subs) {
      if (s.name !== event.name) continue;
      if (s.group === undefined) {
        const list = fanout.get(s.worker);
        if (list) list.push(s.sub);
        else fanout.set(s.worker, [s.sub]);
      } else groups.add(s.group);
    }
    for (const [worker, subs] of fanout) this.#send(worker, { weft: 'bus', op: 'deliver', event, subs });
    for (const group of groups) this.#toGroup(event, group, event.name);
  }

  #toGroup(event: BusEvent, group: string, name: string): void {
    const members: Sub[] = [];
    for (const s of this.#subs)
      if (s.name === name && s.group === group && s.worker.isConnected()) members.push(s);
    if (members.length === 0) {
      const key = `${name}\u0000${group}`;
      let waiting = this.#waiting.get(key);
      if (!waiting) {
        waiting = [];
        this.#waiting.set(key, waiting);
      }
      waiting.push(event);
      if (waiting.length > this.#maxWaiting) {
        const dropped = waiting.shift()!;
        this.#log.warn(
          { event: dropped.id, name, group },
          `bus: group ${group} of ${name} has no member and ${this.#maxWaiting} events waiting: the oldest is dropped`,
        );
      }
      return;
    }
    const turnKey = `${name}\u0000${group}`;
    const turn = this.#turn.get(turnKey) ?? 0;
    this.#turn.set(turnKey, turn + 1);
    const member = members[turn % members.length]!;
    const key = ++this.#key;
    this.#inflight.set(key, { event, group, member });
    this.#send(member.worker, { weft: 'bus', op: 'deliver', event, subs: [member.sub], key });
  }

  #ack(key: number, ok: boolean): void {
    const f = this.#inflight.get(key);
    if (!f) return;
    this.#inflight.delete(key);
    if (ok) return;
    if (f.event.attempt >= this.#maxAttempts) {
      this.#log.warn(
        { event: f.event.id, name: f.event.name, group: f.group, attempts: f.event.attempt },
        `bus: ${f.event.name} ${f.event.id} failed ${f.event.attempt} times in group ${f.group}: dropped`,
      );
      return;
    }
    // Again after a pause that grows with the attempts, so a handler failing at once does not spin.
    const again = { ...f.event, attempt: f.event.attempt + 1 };
    setTimeout(
      () => this.#toGroup(again, f.group, again.name),
      Math.min(5_000, 50 * 2 ** f.event.attempt),
    ).unref();
  }

  #send(worker: Worker, msg: BusWireMessage): void {
    // A worker whose channel broke gets nothing; its exit hands its group events to another member.
    sendTo(worker, msg);
  }
}
