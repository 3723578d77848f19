/**
 * The page's files (HTML, two JS modules, CSS, an icon), read once at start-up and served with an ETag and gzip.
 * They live in `src/dashboard/assets/`; `npm run build` copies them to `dist/dashboard/assets/`, so the built
 * runtime needs nothing outside `dist/` (a production image copies only that). Internal.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
  etag: string;
}

/** Served path → file in `assets/`. */
const FILES: Record<string, [file: string, type: string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/dashboard/dashboard.js': ['dashboard.js', 'text/javascript; charset=utf-8'],
  '/dashboard/util.js': ['util.js', 'text/javascript; charset=utf-8'],
  '/dashboard/dashboard.css': ['dashboard.css', 'text/css; charset=utf-8'],
  '/dashboard/icon.svg': ['icon.svg', 'image/svg+xml'],
};

/**
 * Everything the page loads comes from this server (no CDN, no inline script or style); thumbnails come from the
 * same origin or the `imageOrigins` given (an application's separate content origin), and files picked for upload
 * are previewed as `blob:` URLs.
 */
export function pageCsp(imageOrigins: readonly string[] = []): string {
  const images = ["'self'", ...imageOrigins, 'blob:', 'data:'].join(' ');
  return (
    `default-src 'none'; script-src 'self'; style-src 'self'; img-src ${images}; connect-src 'self'; ` +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
  );
}

/** `assets/` beside this module: `src/dashboard/assets/`, or the copy `npm run build` puts in `dist/dashboard/`. */
function assetsDir(): URL {
  return new URL('./assets/', import.meta.url);
}

/** Reads and compresses the assets; throws at start-up (not on the first request) when one is missing. */
export function loadAssets(): Map<string, Asset> {
  const dir = assetsDir();
  const assets = new Map<string, Asset>();
  for (const [path, [file, type]] of Object.entries(FILES)) {
    const body = readFileSync(new URL(file, dir));
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    assets.set(path, { type, body, gzip: gzipSync(body, { level: 9 }), etag });
  }
  return assets;
}

/** Answers `GET`/`HEAD` of one asset: 304 when the ETag matches, gzip when the client takes it. */
export function sendAsset(asset: Asset, req: IncomingMessage, res: ServerResponse, csp = pageCsp()): void {
  const headers: Record<string, string> = {
    'content-type': asset.type,
    etag: asset.etag,
    // Revalidated on every load (a 304 costs a few bytes), so a new version shows at once after a deploy.
    'cache-control': 'no-cache',
    vary: 'accept-encoding',
    'x-content-type-options': 'nosniff',
  };
  if (asset.type.startsWith('text/html')) {
    headers['content-security-policy'] = csp;
    headers['referrer-policy'] = 'no-referrer';
  }
  const match = req.headers['if-none-match'];
  if (match?.split(',').some((t) => t.trim().replace(/^W\//, '') === asset.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const body = gzip ? asset.gzip : asset.body;
  if (gzip) headers['content-encoding'] = 'gzip';
  headers['content-length'] = String(body.length);
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}
