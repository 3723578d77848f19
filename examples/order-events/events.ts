// The order service's events (seed 002): what each one carries, typed once for every publisher and subscriber.
export type OrderEvents = {
  orderPlaced: { orderId: string; userId: string; items: { productId: string; qty: number }[] };
};
