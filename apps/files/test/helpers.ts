/** Shared test helpers: a service in a temp directory, listening on an ephemeral loopback port. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FilesConfig, loadConfig } from '../src/config.ts';
import type { EventBus, FilesEvent } from '../src/events.ts';
import { silentLogger } from '../src/logger.ts';
import { createService, type Service, type ServiceOptions } from '../src/service.ts';

export interface Running extends Service {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** A service with a fresh data directory; `overrides` win over the defaults. */
export async function startService(
  overrides: Partial<FilesConfig> = {},
  options: Partial<ServiceOptions> = {},
): Promise<Running> {
  const dataDir = mkdtempSync(join(tmpdir(), 'files-test-'));
  const config = { ...loadConfig({ FILES_DATA_DIR: dataDir }, dataDir), port: 0, ...overrides, dataDir };
  const service = await createService(config, { log: silentLogger, ...options });
  await service.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = service.app.server.address() as { port: number };
  return {
    ...service,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    async stop() {
      await service.app.close();
      await service.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Every file under `dir`, recursively, relative to it. */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1));
}

/** A JPEG (or other format) made by sharp, `width`×`height`, with EXIF orientation when asked. */
export async function makeImage(
  format: 'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'avif',
  width = 640,
  height = 480,
  orientation?: number,
): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  let img = sharp({ create: { width, height, channels: 3, background: { r: 200, g: 80, b: 40 } } });
  if (orientation) img = img.withMetadata({ orientation });
  return img.toFormat(format).toBuffer();
}

/**
 * Resolves with the first event after `after` (an event id) that `match` accepts: one already recorded (it may have
 * been published before this was called) or one to come; fails naming `what` after `ms`.
 */
export function waitFor<E extends FilesEvent>(
  bus: EventBus,
  match: (e: FilesEvent) => e is E,
  ms: number,
  what: string,
  after = 0,
): Promise<E> {
  return new Promise<E>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    const done = (e: E) => {
      clearTimeout(timer);
      off();
      resolve(e);
    };
    const off = bus.on('*', (e) => {
      if (e.id > after && match(e)) done(e);
    });
    bus.since(after, 10_000).then((events) => {
      const seen = events.find(match);
      if (seen) done(seen);
    }, reject);
  });
}

/** Polls `test` every 50 ms until it holds; fails naming `what` after `ms`. Resolves with the time it took. */
export async function until(
  test: () => Promise<boolean> | boolean,
  ms: number,
  what: string,
): Promise<number> {
  const t = performance.now();
  while (!(await test())) {
    if (performance.now() - t > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return performance.now() - t;
}

/** The id of the newest recorded event (0 when none). */
export async function lastEventId(bus: EventBus): Promise<number> {
  return (await bus.since(0, 1_000_000)).at(-1)?.id ?? 0;
}

/** A free TCP port on 127.0.0.1 (for a process the test starts, which binds it itself). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}
