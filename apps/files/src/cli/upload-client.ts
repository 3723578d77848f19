/** What `weft-files upload` does: find the files, stream them to the service with one progress bar, wait. */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { basename, join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { meter, progressBar } from 'weft/stream';

export interface LocalFile {
  path: string;
  size: number;
}

interface JobView {
  id: number;
  kind: string;
  state: string;
  lastError: string | null;
  errorCode: string | null;
}

export interface Outcome {
  path: string;
  ok: boolean;
  id?: string;
  type?: string;
  size?: number;
  jobs: { kind: string; state: string; error?: string }[];
  error?: string;
}

export interface UploadOptions {
  url: URL;
  token?: string;
  concurrency: number;
  wait: boolean;
  timeoutMs: number;
}

/** Every file under `paths` (folders recursively, symlinks followed as `stat` does), sorted, each once. */
export async function collectFiles(paths: string[]): Promise<LocalFile[]> {
  const found = new Map<string, number>();
  const visit = async (path: string): Promise<void> => {
    const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot read ${path}: ${err.code ?? err.message}`);
    });
    if (st.isDirectory()) {
      for (const entry of (await readdir(path)).sort()) await visit(join(path, entry));
    } else if (st.isFile()) found.set(resolve(path), st.size);
  };
  for (const p of paths) await visit(p);
  return [...found].map(([path, size]) => ({ path, size }));
}

function send(file: LocalFile, o: UploadOptions, tap: Transform): Promise<{ status: number; body: string }> {
  const target = new URL(`/files?name=${encodeURIComponent(basename(file.path))}`, o.url);
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolveSend, reject) => {
    const req = request(
      target,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': file.size,
          ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
        },
      },
      (res: IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolveSend({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    // A 413 or 401 may come before the body is sent: the request stream then fails, the answer still counts.
    pipeline(createReadStream(file.path), tap, req).catch(() => {});
  });
}

function errorOf(status: number, body: string): string {
  try {
    const e = (JSON.parse(body) as { error?: { code?: string; message?: string } | string }).error;
    if (typeof e === 'object' && e) return `${status} ${e.code}: ${e.message}`;
    if (typeof e === 'string') return `${status} ${e}`;
  } catch {}
  return `HTTP ${status}`;
}

async function waitForJobs(id: string, o: UploadOptions, deadline: number): Promise<JobView[]> {
  for (;;) {
    const res = await fetch(new URL(`/files/${id}`, o.url));
    const file = (await res.json()) as { jobs: JobView[] };
    if (file.jobs.every((j) => j.state === 'completed' || j.state === 'dead')) return file.jobs;
    if (Date.now() > deadline) return file.jobs;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Uploads `files`, `concurrency` at a time, with one progress bar; resolves with each file's outcome. */
export async function uploadAll(files: LocalFile[], o: UploadOptions): Promise<Outcome[]> {
  const total = files.reduce((n, f) => n + f.size, 0);
  // One meter for all the files: every file's bytes are also written into it as they are sent.
  const overall = meter<Buffer>({
    name: `upload ${files.length} files`,
    objectMode: false,
    totalBytes: total,
  });
  overall.resume();
  const bar = progressBar(overall, { unit: 'chunks' });
  const outcomes: Outcome[] = new Array(files.length);
  let next = 0;
  const deadline = Date.now() + o.timeoutMs;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) {
      const file = files[i]!;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, done) {
          overall.write(chunk);
          done(null, chunk);
        },
      });
      try {
        const { status, body } = await send(file, o, tap);
        if (status !== 201) {
          outcomes[i] = { path: file.path, ok: false, jobs: [], error: errorOf(status, body) };
          continue;
        }
        const up = JSON.parse(body) as { id: string; type: string; size: number; jobs: JobView[] };
        const jobs = o.wait ? await waitForJobs(up.id, o, deadline) : up.jobs;
        outcomes[i] = {
          path: file.path,
          ok: !o.wait || jobs.every((j) => j.state === 'completed'),
          id: up.id,
          type: up.type,
          size: up.size,
          jobs: jobs.map((j) => ({
            kind: j.kind,
            state: j.state,
            ...(j.lastError ? { error: `${j.errorCode ?? 'error'}: ${j.lastError}` } : {}),
          })),
        };
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const why =
          e.code === 'ECONNREFUSED'
            ? `nothing listens on ${o.url.origin} (is the service running?)`
            : e.message;
        outcomes[i] = { path: file.path, ok: false, jobs: [], error: why };
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(o.concurrency, files.length) }, worker));
  } finally {
    overall.end();
    bar.close();
  }
  return outcomes;
}
