/**
 * `weftjs/bus`: one typed event bus from a process to a cluster to many machines. See docs/bus.md.
 * @module
 */
export { Bus, type BusOptions, createBus } from './bus.ts';
export { ClusterTransport, clusterTransport } from './cluster.ts';
export { ProcessTransport, processTransport } from './process.ts';
export type {
  BusEvent,
  BusScope,
  Deliver,
  EventMap,
  Handler,
  SubscribeOptions,
  Subscription,
  Transport,
  TransportSubscription,
} from './types.ts';
