/** What `weft-files upload` does: find the files, stream them to the service with one progress bar, wait. */
import { createReadStream } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import * as tus from 'tus-js-client';
import { meter, progressBar } from 'weftjs/stream';

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
  /**
   * Where started uploads are remembered (see {@link defaultStateFile}), so a run that was interrupted resumes each
   * file where it stopped; without it every run starts over.
   */
  stateFile?: string;
  /** Delays between tries of a failed request, ms (default 0, 1, 3, 5 and 10 s). */
  retryDelays?: number[];
  /** Told when a file resumes an upload started before, with the bytes the server already has. */
  onResume?: (file: LocalFile, offset: number) => void;
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

/** tus-js-client's Node build has it; its type declarations do not. */
const { FileUrlStorage } = tus as unknown as { FileUrlStorage: new (path: string) => tus.UrlStorage };

/** Where `weft-files upload` remembers the tus upload URL of each file it has started, to resume it later. */
export function defaultStateFile(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'weft-files', 'uploads.json');
}

/** The file's id, once every byte is sent; resumes an upload of the same file (path, size, mtime) started before. */
async function send(
  file: LocalFile,
  o: UploadOptions,
  progress: (bytes: number) => void,
): Promise<{ id: string; resumedAt: number }> {
  const endpoint = new URL('/uploads/', o.url).href;
  const headers: Record<string, string> = o.token ? { authorization: `Bearer ${o.token}` } : {};
  let sent = 0;
  const upload: tus.Upload = new tus.Upload(createReadStream(file.path), {
    endpoint,
    uploadSize: file.size,
    metadata: { filename: basename(file.path) },
    headers,
    // Network errors, 5xx, 409 and 423 are retried after these delays; a lost connection resumes where it stopped.
    retryDelays: o.retryDelays ?? [0, 1_000, 3_000, 5_000, 10_000],
    ...(o.stateFile ? { urlStorage: new FileUrlStorage(o.stateFile) } : {}),
    removeFingerprintOnSuccess: true,
    onShouldRetry(err): boolean {
      const status = err.originalResponse?.getStatus() ?? 0;
      // Refused before the upload ever reached the server: nothing listens there, say so now. Once it has started, a
      // refused connection is a restart (a deploy) and is retried.
      if (status === 0) return !(upload.url === null && errnoOf(err) === 'ECONNREFUSED');
      return status >= 500 || status === 409 || status === 423;
    },
    onProgress(bytesSent) {
      if (bytesSent > sent) progress(bytesSent - sent);
      sent = bytesSent;
    },
  });
  let resumedAt = 0;
  if (o.stateFile) {
    const previous = (await upload.findPreviousUploads())[0];
    if (previous) {
      // Where the server has it: the bytes before are not sent again.
      const head = await fetch(previous.uploadUrl ?? '', {
        method: 'HEAD',
        headers: { ...headers, 'tus-resumable': '1.0.0' },
      }).catch(() => undefined);
      const offset = Number(head?.headers.get('upload-offset'));
      if (head?.ok && Number.isInteger(offset)) {
        upload.resumeFromPreviousUpload(previous);
        resumedAt = offset;
        sent = offset;
        progress(offset);
        o.onResume?.(file, offset);
      }
    }
  }
  const last = await new Promise<tus.HttpResponse>((resolveSend, reject) => {
    upload.options.onSuccess = ({ lastResponse }: tus.OnSuccessPayload) => resolveSend(lastResponse);
    upload.options.onError = reject;
    upload.start();
  });
  const id = last.getHeader('x-weft-file-id');
  if (!id)
    throw new Error(`${endpoint} finished the upload without naming its file (is it a weft-files service?)`);
  return { id, resumedAt };
}

function errorOf(status: number, body: string): string {
  try {
    const e = (JSON.parse(body) as { error?: { code?: string; message?: string } | string }).error;
    if (typeof e === 'object' && e) return `${status} ${e.code}: ${e.message}`;
    if (typeof e === 'string') return `${status} ${e}`;
  } catch {}
  return `HTTP ${status}`;
}

/** The system error code under a tus-js-client error (it wraps the request's error, which may wrap the socket's). */
function errnoOf(err: unknown): string | undefined {
  const cause =
    (err as { causingError?: NodeJS.ErrnoException | null }).causingError ?? (err as NodeJS.ErrnoException);
  return cause?.code ?? (cause?.cause as NodeJS.ErrnoException | undefined)?.code;
}

/** What went wrong, as the user reads it: the service's typed error, or why it could not be reached. */
function failure(err: unknown, url: URL): string {
  const res = (err as { originalResponse?: tus.HttpResponse | null }).originalResponse;
  if (res) return errorOf(res.getStatus(), res.getBody());
  if (errnoOf(err) === 'ECONNREFUSED') return `nothing listens on ${url.origin} (is the service running?)`;
  const cause = (err as { causingError?: Error | null }).causingError;
  return cause?.message ?? (err as Error).message ?? String(err);
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
  // One meter for all the files: each file's progress adds the bytes the server acknowledged since the last.
  const overall = meter<number>({
    name: `upload ${files.length} files`,
    bytes: (n) => n,
    totalBytes: total,
  });
  overall.resume();
  const bar = progressBar(overall, { unit: 'chunks' });
  const outcomes: Outcome[] = new Array(files.length);
  let next = 0;
  const deadline = Date.now() + o.timeoutMs;
  if (o.stateFile) await mkdir(dirname(o.stateFile), { recursive: true });
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) {
      const file = files[i]!;
      try {
        const { id } = await send(file, o, (bytes) => overall.write(bytes));
        const res = await fetch(new URL(`/files/${id}`, o.url));
        if (!res.ok) throw new Error(errorOf(res.status, await res.text()));
        const up = (await res.json()) as { id: string; type: string; size: number; jobs: JobView[] };
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
        outcomes[i] = { path: file.path, ok: false, jobs: [], error: failure(err, o.url) };
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
