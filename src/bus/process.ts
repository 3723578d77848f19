/**
 * The process transport: subscribers in this process, called synchronously in the order they subscribed, with the
 * payload object itself (no copy, no serialisation): EventEmitter's semantics. A group's members take turns.
 * @module
 */
import type { BusEvent, Deliver, Transport, TransportSubscription } from './types.ts';

interface Group {
  members: Deliver[];
  next: number;
}

interface Listeners {
  fanout: Deliver[];
  groups: Map<string, Group>;
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
  readonly #listeners = new Map<string, Listeners>();
  #seq = 0;
  #closed = false;
  /** Set by the bus that uses it. */
  onError: DeliveryError = () => {};

  /** Delivers to every subscriber now; true when there was one. */
  dispatch(name: string, payload: unknown): boolean {
    const l = this.#listeners.get(name);
    if (!l || this.#closed) return false;
    const event: BusEvent = { id: String(++this.#seq), name, payload, time: Date.now(), attempt: 1 };
    let delivered = false;
    const fanout = l.fanout;
    for (let i = 0; i < fanout.length; i++) {
      this.#call(fanout[i]!, event);
      delivered = true;
    }
    if (l.groups.size > 0) {
      for (const g of l.groups.values()) {
        if (g.members.length === 0) continue;
        const member = g.members[g.next % g.members.length]!;
        g.next = (g.next + 1) % g.members.length;
        this.#call(member, event);
        delivered = true;
      }
    }
    return delivered;
  }

  #call(deliver: Deliver, event: BusEvent): void {
    try {
      const r = deliver(event);
      if (r instanceof Promise) r.catch(() => {}); // reported by the bus's wrapper
    } catch {} // reported by the bus's wrapper; the other subscribers still get it
  }

  publish(name: string, payload: unknown): Promise<string> {
    this.dispatch(name, payload);
    return Promise.resolve(String(this.#seq));
  }

  async subscribe(s: TransportSubscription): Promise<() => Promise<void>> {
    let l = this.#listeners.get(s.name);
    if (!l) {
      l = { fanout: [], groups: new Map() };
      this.#listeners.set(s.name, l);
    }
    const listeners = l;
    const deliver = s.deliver;
    if (s.group === undefined) {
      // Copied on change, never in place: a dispatch under way keeps the list it started with.
      listeners.fanout = [...listeners.fanout, deliver];
      return async () => {
        listeners.fanout = listeners.fanout.filter((d) => d !== deliver);
      };
    }
    let g = listeners.groups.get(s.group);
    if (!g) {
      g = { members: [], next: 0 };
      listeners.groups.set(s.group, g);
    }
    const group = g;
    group.members = [...group.members, deliver];
    return async () => {
      group.members = group.members.filter((d) => d !== deliver);
      if (group.members.length === 0) listeners.groups.delete(s.group!);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
  }
}

/** A transport for subscribers of this process only (the default of `createBus`). */
export function processTransport(): ProcessTransport {
  return new ProcessTransport();
}
