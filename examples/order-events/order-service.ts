// Places orders: publishes `orderPlaced` and knows nothing of who listens.
import { randomUUID } from 'node:crypto';
import { bus } from './bus.ts';

export async function placeOrder(
  userId: string,
  items: { productId: string; qty: number }[],
): Promise<string> {
  const orderId = `o-${randomUUID().slice(0, 8)}`;
  await bus.publish('orderPlaced', { orderId, userId, items });
  return orderId;
}
