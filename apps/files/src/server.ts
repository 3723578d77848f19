/**
 * One worker process of the file service, as `weft start apps/files/src/server.ts` runs it (also runs alone):
 * configuration, then the service under a `weftjs/lifecycle` lifecycle — SIGTERM drains uploads in flight, lets
 * running jobs finish or gives them back to the queue, then closes the pool and the database.
 */
import { createLifecycle, type LoadShedder } from 'weftjs/lifecycle';
import { defaultMetrics } from 'weftjs/metrics';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { backendMetrics, metricsRoute, outboxMetrics, serviceMetrics } from './metrics.ts';
import type { Backend } from './resilience.ts';
import { createService } from './service.ts';
import { uploadShedder } from './shedding.ts';

/** Node's default keep-alive timeout, announced to clients; fastify's own default is 72 s. */
const KEEP_ALIVE_MS = 5_000;
const log = createLogger();
const config = loadConfig();
const life = createLifecycle({ shutdownTimeout: config.shutdownTimeout, logger: log });

// Made once the process serves: module loading at start-up blocks the event loop for hundreds of ms, which a
// shedder watching from the start would take for overload and answer the first uploads with 503.
let guard: ReturnType<LoadShedder['handler']> | undefined;

const metrics = defaultMetrics();
const service = await createService(config, {
  log,
  keepAliveTimeout: KEEP_ALIVE_MS,
  http: {
    shed: (request, reply, done) => (guard ? guard(request, reply, done) : done()),
    health: { live: life.livenessHandler(), ready: life.readinessHandler() },
    metrics: metricsRoute(metrics),
  },
  metrics: () => metrics.snapshot(),
});
metrics.addPool(service.pool, { name: 'files' });
metrics.addLifecycle(life, { name: 'files' });
serviceMetrics(metrics, service.bus, service.queue, service.rateLimited, service.catalog);
backendMetrics(metrics, service.guards);
if (service.relay) outboxMetrics(metrics, service.relay);
// A keep-alive connection that is idle when the drain starts is closed only once the client's own idle timer
// (the `Keep-Alive: timeout=5` hint, which undici and Node's agent honour, minus their margin) has retired it:
// closing it sooner races a request the client may be sending on it at that moment (a reset upload).
life.addServer(service.app.server, { idleGrace: KEEP_ALIVE_MS });
// Dashboard streams never end by themselves: end them as soon as the listener closes (the pages reconnect to a
// process that still serves), or the drain would wait on them until the deadline.
life.onShutdown('dashboard', () => service.dashboard.close(), { phase: 'listeners' });
// Not ready while a backend uploads need is away or its breaker is open; liveness does not depend on them. A remote
// queue's check is shown failing but leaves the node ready (degraded): its uploads wait in the outbox meanwhile.
for (const [backend, check] of Object.entries(service.checks)) {
  life.addCheck(backend, check, { kind: 'readiness', critical: service.critical[backend as Backend] });
}
// Running jobs get most of the deadline to finish; what is still running then is released back to the queue.
life.onShutdown('jobs', ({ signal }) => service.close(signal), {
  phase: 'drain',
  timeout: Math.max(1_000, config.shutdownTimeout - 5_000),
});

await service.app.listen({ port: config.port, host: config.host });
await life.ready();
const shedder = uploadShedder(config, service.queued, log);
guard = shedder.handler();
metrics.addShedder(shedder, { name: 'uploads' });
life.register(shedder, { phase: 'resources' });
log.info(
  { port: config.port, host: config.host, dataDir: config.dataDir },
  `files listening on ${config.host}:${config.port}`,
);
// Said once for the cluster (by its first worker), in words: where to look and where the data is; who may do what,
// loudly when anyone may do anything.
if ((process.env.WEFT_WORKER_INDEX ?? '0') === '0') {
  const at = `http://${config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host}:${config.port}`;
  log.info(
    { dashboard: `${at}/`, metrics: `${at}/metrics`, dataDir: config.dataDir },
    `dashboard ${at}/ · metrics ${at}/metrics · data in ${config.dataDir} · upload: curl -T FILE '${at}/files?name=FILE'`,
  );
  if (config.tokensFile)
    log.info(
      { tokensFile: config.tokensFile },
      `scoped tokens from ${config.tokensFile}: every route needs one`,
    );
  else if (config.token)
    log.warn(
      { reads: 'open' },
      'FILES_TOKEN guards writes only: anyone who can reach this service can list and read every file; FILES_TOKENS_FILE gives scoped tokens and tenants (docs/files.md, "Tokens and tenants")',
    );
  else
    log.warn(
      { access: 'open' },
      'NO TOKEN CONFIGURED: anyone who can reach this service can upload, read, delete and retry; set FILES_TOKENS_FILE (scoped tokens, tenants) or FILES_TOKEN before exposing it',
    );
}
// What the content origin buys, said where the operator looks (docs/files.md#security has the whole story).
log.info(
  { contentOrigin: config.contentOrigin ?? null },
  config.contentOrigin
    ? `file content links point to ${config.contentOrigin}, which serves nothing else: a file opened there cannot reach the dashboard's token or the API`
    : 'file content is served on this origin, sandboxed (CSP sandbox, nosniff, attachment unless an image, text or PDF); FILES_CONTENT_ORIGIN moves it to an origin of its own, so even a browser that ignored the sandbox could not reach the dashboard’s token',
);
