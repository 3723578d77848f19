/** Shared test helpers: a service in a temp directory, listening on an ephemeral loopback port. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
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
    const seen = bus.since(after, 10_000).find(match);
    if (seen) done(seen);
  });
}

/** The id of the newest recorded event (0 when none). */
export function lastEventId(bus: EventBus): number {
  return bus.since(0, 1_000_000).at(-1)?.id ?? 0;
}

/**
 * A PNG whose header declares `width`×`height` pixels but whose data is a few bytes: what a pixel bomb looks like
 * to a decoder that trusts the header.
 */
export function pixelBombPng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(64))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
