/**
 * Streams a stored object as an HTTP response with the validators and ranges a client or a CDN expects: `ETag`,
 * `If-None-Match` (304), single `Range` requests (206, or 416 when unsatisfiable) with `If-Range`. A request for
 * several ranges gets the whole object, which RFC 9110 §14.2 allows.
 *
 * Uploaded bytes are the users', served from the service's own origin, where the dashboard keeps the operator's
 * token: they must never become an active document there. Every response is sandboxed by its CSP (a unique opaque
 * origin, no script, no plugin, no subresource) and `nosniff`; only types a browser shows passively are `inline`.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Storage } from '../storage/types.ts';

export interface SendOptions {
  key: string;
  size: number;
  type: string;
  /** A strong validator, quoted. */
  etag: string;
  /** Shown to the browser as the download name. */
  filename?: string;
  /** Content that never changes under this URL may be cached for a year. */
  immutable?: boolean;
}

/** `{ start, end }` (inclusive), `'unsatisfiable'`, or undefined when the header does not ask for one range. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * Sent with every stored object: even a document the browser renders (an XML file with an XHTML script, an SVG,
 * HTML it was tricked into sniffing) gets an opaque origin, so it cannot read the service's storage or cookies,
 * runs no script and loads nothing. Chromium and Firefox still show a top-level image or plain text under it.
 */
export const CONTENT_SECURITY_POLICY = "sandbox; default-src 'none'; img-src 'self'";

/**
 * Types shown `inline`: raster images, plain text and PDF, which browsers render without running anything from
 * the file (PDF under the sandbox above). Everything else, SVG, XML, HTML, CSV, is an `attachment`: a download.
 */
export const INLINE_TYPES: ReadonlySet<string> = new Set([
  'image/jpeg',
  'image/png',
  'image/gif',
  'image/webp',
  'image/avif',
  'image/bmp',
  'text/plain',
  'application/pdf',
]);

/** `inline` or `attachment` for `type` (parameters such as `; charset` ignored). */
export function dispositionFor(type: string): 'inline' | 'attachment' {
  const bare = type.split(';')[0]!.trim().toLowerCase();
  return INLINE_TYPES.has(bare) ? 'inline' : 'attachment';
}

function contentDisposition(type: string, filename: string | undefined): string {
  const kind = dispositionFor(type);
  if (filename === undefined) return kind;
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

/** Answers `request` with the object (or a part of it, or 304/416). */
export async function sendObject(
  request: FastifyRequest,
  reply: FastifyReply,
  storage: Storage,
  o: SendOptions,
): Promise<FastifyReply> {
  reply
    .header('etag', o.etag)
    .header('accept-ranges', 'bytes')
    .header('cache-control', o.immutable ? 'private, max-age=31536000, immutable' : 'private, no-cache')
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('content-disposition', contentDisposition(o.type, o.filename));
  const inm = request.headers['if-none-match'];
  if (inm?.split(',').some((t) => t.trim() === o.etag || t.trim() === '*')) {
    return reply.code(304).send();
  }
  const ifRange = request.headers['if-range'];
  const range = ifRange && ifRange !== o.etag ? undefined : parseRange(request.headers.range, o.size);
  if (range === 'unsatisfiable') {
    return reply
      .code(416)
      .header('content-range', `bytes */${o.size}`)
      .send({ error: { code: 'ERR_WEFT_FILES_RANGE', message: `The range is outside the ${o.size} bytes` } });
  }
  reply.type(o.type);
  if (range) {
    reply
      .code(206)
      .header('content-range', `bytes ${range.start}-${range.end}/${o.size}`)
      .header('content-length', range.end - range.start + 1);
    return reply.send(await storage.read(o.key, range));
  }
  reply.header('content-length', o.size);
  if (request.method === 'HEAD') return reply.send();
  return reply.send(await storage.read(o.key));
}
