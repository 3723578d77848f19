/**
 * The process transport: subscribers in this process, called synchronously in the order they subscribed, with the
 * payload object itself (no copy, no serialisation): EventEmitter's semantics. A group's members take turns.
 * @module
 */
import type { BusEvent, Deliver, Transport, TransportSubscription } from './types.ts';

/** A subscriber: `direct` when its handler takes the payload alone (no event is made for it). */
interface Member {
  deliver: Deliver;
  direct: ((payload: unknown, seq: number, name: string) => void) | undefined;
}

interface Group {
  members: Member[];
  next: number;
}

interface Listeners {
  fanout: Member[];
  groups: Map<string, Group>;
  /** Subscribers without `direct`: an event is made only when there is one. */
  needEvent: number;
  /** While every subscriber is a plain (no group) `direct` one: their functions, called with nothing else to do. */
  fast: ((payload: unknown, seq: number, name: string) => void)[] | undefined;
}

/** `l.fast` again after a change: set only when each subscriber takes the payload alone and none is in a group. */
function refresh(l: Listeners): void {
  l.fast = l.needEvent === 0 && l.groups.size === 0 ? l.fanout.map((m) => m.direct!) : undefined;
}

/** What a delivery that failed is reported to (the bus's `onError`). */
export type DeliveryError = (err: unknown, event: BusEvent) => void;

/**
 * @example
 * ```ts
 * const bus = createBus<Events>({ transport: processTransport() }); // the default transport
 * ```
 */
export class ProcessTransport implements Transport {
  readonly scope = 'process' as const;
  /** By name; a prototype-less object, as EventEmitter keeps its listeners (a property load, not a Map lookup). */
  #listeners: Record<string, Listeners | undefined> = Object.create(null);
  #seq = 0;
  #closed = false;
  /** Set by the bus that uses it. */
  onError: DeliveryError = () => {};

  /** Delivers to every subscriber now; true when there was one. */
  dispatch(name: string, payload: unknown): boolean {
    const l = this.#listeners[name];
    const seq = ++this.#seq;
    // No closed check: close() empties the listeners, and nothing subscribes after it.
    if (l === undefined) return false;
    const fast = l.fast;
    if (fast === undefined) return this.#dispatchAll(l, name, payload, seq);
    // EventEmitter's path, kept small enough to inline: each handler with the payload (`direct` reports its own
    // failures and never throws).
    for (let i = 0; i < fast.length; i++) fast[i]!(payload, seq, name);
    return fast.length > 0;
  }

  /** With a group, or a handler that takes the event. */
  #dispatchAll(l: Listeners, name: string, payload: unknown, seq: number): boolean {
    // Made once, before any handler runs (its time is the publish's), and only when a handler asks for it.
    const event: BusEvent | undefined =
      l.needEvent > 0 ? { id: String(seq), name, payload, time: Date.now(), attempt: 1 } : undefined;
    let delivered = false;
    const fanout = l.fanout;
    for (let i = 0; i < fanout.length; i++) {
      this.#call(fanout[i]!, event, payload, seq, name);
      delivered = true;
    }
    if (l.groups.size > 0) {
      for (const g of l.groups.values()) {
        if (g.members.length === 0) continue;
        const member = g.members[g.next % g.members.length]!;
        g.next = (g.next + 1) % g.members.length;
        this.#call(member, event, payload, seq, name);
        delivered = true;
      }
    }
    return delivered;
  }

  #call(m: Member, event: BusEvent | undefined, payload: unknown, seq: number, name: string): void {
    // `direct` reports its own failures and never throws.
    if (m.direct !== undefined) {
      m.direct(payload, seq, name);
      return;
    }
    try {
      const r = m.deliver(event!);
      if (r instanceof Promise) r.catch(() => {}); // reported by the bus's wrapper
    } catch {} // reported by the bus's wrapper; the other subscribers still get it
  }

  publish(name: string, payload: unknown): Promise<string> {
    this.dispatch(name, payload);
    return Promise.resolve(String(this.#seq));
  }

  async subscribe(s: TransportSubscription): Promise<() => Promise<void>> {
    if (this.#closed) return async () => {}; // the bus refuses first; a transport used alone delivers nothing more
    let l = this.#listeners[s.name];
    if (!l) {
      l = { fanout: [], groups: new Map(), needEvent: 0, fast: undefined };
      this.#listeners[s.name] = l;
    }
    const listeners = l;
    const member: Member = { deliver: s.deliver, direct: s.direct };
    if (!member.direct) listeners.needEvent++;
    let subscribed = true;
    const gone = () => {
      if (!subscribed) return false;
      subscribed = false;
      if (!member.direct) listeners.needEvent--;
      return true;
    };
    if (s.group === undefined) {
      // Copied on change, never in place: a dispatch under way keeps the list it started with.
      listeners.fanout = [...listeners.fanout, member];
      refresh(listeners);
      return async () => {
        if (!gone()) return;
        listeners.fanout = listeners.fanout.filter((d) => d !== member);
        refresh(listeners);
      };
    }
    let g = listeners.groups.get(s.group);
    if (!g) {
      g = { members: [], next: 0 };
      listeners.groups.set(s.group, g);
    }
    const group = g;
    group.members = [...group.members, member];
    refresh(listeners);
    return async () => {
      if (!gone()) return;
      group.members = group.members.filter((d) => d !== member);
      if (group.members.length === 0) listeners.groups.delete(s.group!);
      refresh(listeners);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners = Object.create(null);
  }
}

/** A transport for subscribers of this process only (the default of `createBus`). */
export function processTransport(): ProcessTransport {
  return new ProcessTransport();
}
