// Sends the confirmation: once per order, whichever process takes it (a group).
import { bus, done } from './bus.ts';

export const ready = bus.subscribe(
  'orderPlaced',
  ({ orderId, userId }) => done('email', `confirmation of ${orderId} to ${userId}`),
  {
    group: 'email',
  },
).ready;
