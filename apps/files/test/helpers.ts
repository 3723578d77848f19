/** Shared test helpers: a service in a temp directory, listening on an ephemeral loopback port. */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FilesConfig, loadConfig } from '../src/config.ts';
import type { FilesBus, Off } from '../src/events/bus.ts';
import type { FilesEvent } from '../src/events/types.ts';
import { silentLogger } from '../src/logger.ts';
import { createService, type Service, type ServiceOptions } from '../src/service.ts';

export interface Running extends Service {
  url: string;
  /** Every event the service's bus delivered to this process since it started. */
  events: EventLog;
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
  const events = new EventLog(service.bus);
  await events.ready;
  await service.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = service.app.server.address() as { port: number };
  return {
    ...service,
    url: `http://127.0.0.1:${port}`,
    dataDir,
    events,
    async stop() {
      events.close();
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
 * Every event a bus delivers to this process from the moment it is made, in the order they arrived: what a test
 * waits on (`waitFor`), whether the event came before or after it started waiting.
 */
export class EventLog {
  readonly events: FilesEvent[] = [];
  readonly #listeners = new Set<(e: FilesEvent) => void>();
  readonly #off: Off;

  constructor(bus: Pick<FilesBus, 'on'>) {
    this.#off = bus.on('*', (e) => {
      this.events.push(e);
      for (const l of this.#listeners) l(e);
    });
  }

  /** Resolves once events flow to the log. */
  get ready(): Promise<void> {
    return this.#off.ready;
  }

  /** Events so far: a position for `waitFor`'s `after`. */
  get count(): number {
    return this.events.length;
  }

  on(listener: (e: FilesEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#off();
    this.#listeners.clear();
  }
}

/**
 * Resolves with the first event of `log` after position `after` that `match` accepts: one already logged or one to
 * come; fails naming `what` after `ms`.
 */
export function waitFor<E extends FilesEvent>(
  log: EventLog,
  match: (e: FilesEvent) => e is E,
  ms: number,
  what: string,
  after = 0,
): Promise<E> {
  const seen = log.events.slice(after).find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise<E>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    const off = log.on((e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
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

/** Polls `check` until it returns a value other than undefined, and resolves with it; fails naming `what` after `ms`. */
export async function untilValue<T>(
  what: string,
  check: () => Promise<T | undefined>,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A free TCP port on 127.0.0.1 (for a process the test starts, which binds it itself). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** For `assert.throws`: an `ERR_WEFT_FILES_CONFIG` whose message matches `pattern`. */
export const configError = (pattern: RegExp) => (err: unknown) => {
  assert.equal((err as { code?: string }).code, 'ERR_WEFT_FILES_CONFIG');
  assert.match((err as Error).message, pattern);
  return true;
};
