// Reserves stock: once per order (a group).
import { bus, done } from './bus.ts';

export const ready = bus.subscribe(
  'orderPlaced',
  ({ orderId, items }) =>
    done('inventory', `${orderId}: ${items.map((i) => `${i.qty}× ${i.productId}`).join(', ')}`),
  { group: 'inventory' },
).ready;
