// Counts orders in every process that runs it (fan-out: each keeps its own figures).
import { bus, done } from './bus.ts';

let orders = 0;
export const ready = bus.subscribe('orderPlaced', ({ orderId }) =>
  done('analytics', `${orderId} (${++orders} seen here)`),
).ready;
