/** The bus's contract: events, subscriptions, and what a transport (process, cluster, Redis, NATS) implements. */

/**
 * Event names and their payloads: `{ orderPlaced: { orderId: string }; ... }`, as a type alias or an interface (an
 * interface has no index signature, so the constraint is "any object type"; names are its string keys).
 */
export type EventMap = object;

/** Where a bus reaches: one process, the workers of one `weft start`, or every machine on a broker. */
export type BusScope = 'process' | 'cluster' | 'machines';

/** One event as a subscriber receives it. */
export interface BusEvent<P = unknown, N extends string = string> {
  /**
   * Unique within the transport: a counter (process), `<pid>:<seq>` (cluster), the stream entry id (Redis), the
   * stream sequence (NATS). A handler that must not act twice on one event (at-least-once transports redeliver)
   * keeps the ids it has handled.
   */
  id: string;
  name: N;
  payload: P;
  /** When it was published, epoch ms. */
  time: number;
  /** 1 on the first delivery; more when an at-least-once transport delivers it again (a handler failed or died). */
  attempt: number;
}

/** Options of `subscribe` and `events`. */
export interface SubscribeOptions {
  /**
   * Work sharing: among the subscribers with this group, in every process the scope spans, one handles each event.
   * Without a group every subscriber gets every event (fan-out).
   */
  group?: string;
  /** Ends the subscription. */
  signal?: AbortSignal;
  /**
   * Where a new subscription starts, on transports that keep events (machines scope): `'new'` (the default: events
   * published from now on), `'first'` (every event kept), or an event id (the events after it). A group that already
   * exists resumes where it stopped, whatever this says.
   */
  from?: 'new' | 'first' | string;
}

/** A subscriber's function. A promise is awaited: an at-least-once transport acknowledges the event when it settles. */
export type Handler<P, N extends string = string> = (payload: P, event: BusEvent<P, N>) => unknown;

/** What delivers events to a subscription. It settles when the event was handled; a rejection means it was not. */
export type Deliver = (event: BusEvent) => unknown;

/** What the transport needs to start delivering. */
export interface TransportSubscription {
  name: string;
  group?: string;
  from?: 'new' | 'first' | string;
  deliver: Deliver;
  /**
   * The same delivery for a handler that takes the payload alone, for a transport that neither retries nor needs to
   * know the outcome (the process scope, at EventEmitter's cost): called instead of `deliver`, with the event's
   * sequence number (its id), it makes no event, reports a failure to the bus's `onError` itself and never throws.
   */
  direct?: (payload: unknown, seq: number, name: string) => void;
}

/**
 * What carries events. `createBus` gives the process transport by default; `clusterTransport()`, `redisTransport()`
 * and `natsTransport()` reach further with the same API.
 */
export interface Transport {
  readonly scope: BusScope;
  /** Publishes; resolves with the event's id once the transport has taken it (see docs/bus.md for what that means). */
  publish(name: string, payload: unknown): Promise<string>;
  /** Starts delivering; resolves, once events flow, with a function that stops (after the deliveries under way). */
  subscribe(subscription: TransportSubscription): Promise<() => Promise<void>>;
  /** Stops every subscription and releases connections it opened itself; idempotent. */
  close(): Promise<void>;
}

/** A live subscription. */
export interface Subscription {
  /** Resolves once events flow to it (a remote transport has registered it). */
  readonly ready: Promise<void>;
  /** Stops it: no event is delivered after the returned promise resolves. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
