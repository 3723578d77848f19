/**
 * `weftjs/lifecycle`: graceful shutdown, health and readiness, and load shedding, for any process. See
 * docs/lifecycle.md.
 * @module
 */
export { InvalidOptionError, WeftError, type WeftErrorCode } from '../errors.ts';
export * from './health.ts';
export type { DrainableServer, ServerOptions } from './http-drain.ts';
export {
  type Closable,
  createLifecycle,
  type HookContext,
  type HookOptions,
  Lifecycle,
  type LifecycleState,
  type ShutdownHook,
} from './lifecycle.ts';
export { type Logger, stderrLogger } from './logger.ts';
export {
  type LifecycleOptions,
  PHASES,
  type Phase,
  type ShutdownSignal,
  SIGNALS,
  SUPERVISED_DRAIN_DELAY,
} from './options.ts';
export type { FastifyLikeReply } from './reply.ts';
export * from './shed.ts';
export { SUPERVISOR_WORD_TIMEOUT } from './supervisor-word.ts';
export { type ServerWatch, watchServers } from './watch.ts';
