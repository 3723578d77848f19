/** The part of a fastify reply Weft's handlers use (fastify's `FastifyReply` fits). */
export interface FastifyLikeReply {
  readonly raw: object;
  code(statusCode: number): unknown;
  header(name: string, value: string): unknown;
  send(payload?: unknown): unknown;
}

/** True for a fastify reply (duck-typed: fastify is not a dependency). */
export function isFastifyReply(value: unknown): value is FastifyLikeReply {
  if (typeof value !== 'object' || value === null) return false;
  const reply = value as Partial<Record<keyof FastifyLikeReply, unknown>>;
  return (
    typeof reply.raw === 'object' &&
    reply.raw !== null &&
    typeof reply.code === 'function' &&
    typeof reply.header === 'function' &&
    typeof reply.send === 'function'
  );
}
