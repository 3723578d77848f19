/**
 * S3-compatible storage (AWS S3, MinIO, and the like) with @aws-sdk/client-s3 and lib-storage's multipart upload,
 * streamed both ways. An object appears only once its upload completes (S3 makes a multipart upload visible
 * atomically), and every upload is checked against the server's answer: its length, and its ETag against the MD5
 * computed while streaming (whole-object MD5 for one part, the MD5 of the parts' MD5s for multipart).
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { FilesError } from '../errors.ts';
import type { ObjectInfo, Storage } from './types.ts';

/** Bytes per multipart part (S3's minimum is 5 MiB). */
const PART_SIZE = 8 * 1024 * 1024;

export interface S3Location {
  bucket: string;
  /** Key prefix, without a leading slash; '' or ending in '/'. */
  prefix: string;
  client: S3ClientConfig;
}

/**
 * Parses `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true`. Credentials come
 * from the URL's user info (`s3://KEY:SECRET@bucket`) or the SDK's usual chain (AWS_ACCESS_KEY_ID, profiles, roles).
 */
export function parseStorageUrl(url: string): S3Location {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FilesError('ERR_WEFT_FILES_CONFIG', `STORAGE_URL is not a URL: ${JSON.stringify(url)}`);
  }
  if (u.protocol !== 's3:' || !u.hostname) {
    throw new FilesError(
      'ERR_WEFT_FILES_CONFIG',
      `STORAGE_URL must look like s3://bucket/prefix?endpoint=…; got ${url}`,
    );
  }
  const prefix = decodeURIComponent(u.pathname.replace(/^\/+/, ''));
  const client: S3ClientConfig = {
    region: u.searchParams.get('region') ?? process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: u.searchParams.get('forcePathStyle') !== 'false' && u.searchParams.has('endpoint'),
    // Checksums are verified by this module (see the file comment); servers other than AWS often reject the
    // SDK's default CRC trailers on streamed bodies.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  const endpoint = u.searchParams.get('endpoint');
  if (endpoint) client.endpoint = endpoint;
  if (u.username) {
    client.credentials = {
      accessKeyId: decodeURIComponent(u.username),
      secretAccessKey: decodeURIComponent(u.password),
    };
  }
  return { bucket: u.hostname, prefix: prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix, client };
}

/** Counts bytes and MD5s them, whole and per part, as they pass. */
class Digest extends Transform {
  /** Not `size`: lib-storage reads a body's `size` as its total length, up front. */
  bytes = 0;
  readonly #whole: Hash = createHash('md5');
  readonly #parts: Buffer[] = [];
  #part: Hash = createHash('md5');
  #inPart = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.#whole.update(chunk);
    for (let at = 0; at < chunk.length; ) {
      const take = Math.min(chunk.length - at, PART_SIZE - this.#inPart);
      this.#part.update(chunk.subarray(at, at + take));
      this.#inPart += take;
      at += take;
      if (this.#inPart === PART_SIZE) this.#endPart();
    }
    done(null, chunk);
  }

  #endPart(): void {
    this.#parts.push(this.#part.digest());
    this.#part = createHash('md5');
    this.#inPart = 0;
  }

  /** The ETags a correct server may answer: the MD5 of one part, or the multipart form `md5(md5s)-N`. */
  etags(): string[] {
    if (this.#inPart > 0 || this.#parts.length === 0) this.#endPart();
    const whole = this.#whole.digest('hex');
    const multi = `${createHash('md5').update(Buffer.concat(this.#parts)).digest('hex')}-${this.#parts.length}`;
    return [whole, multi];
  }
}

/** Options of {@link S3Storage}. */
export interface S3StorageOptions {
  /**
   * The longest a request to the server may go without a byte sent or received, and the longest a connection may
   * take to open, ms (the service passes `storageTimeout`). A server that stops answering (a partition) fails a
   * request after this instead of holding it, and so an upload. With it the SDK tries each request once: the
   * service's guard retries the calls that are safe to repeat, within its deadline, and the client of an upload
   * retries on its `503`. Default: none (the SDK's own timeouts and retries).
   */
  stallMs?: number;
}

export class S3Storage implements Storage {
  readonly client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #tmp: string;

  /** `tmp`: a local directory for processors' copies and scratch folders. */
  constructor(location: S3Location, tmp: string, options: S3StorageOptions = {}) {
    const stall = options.stallMs;
    // One attempt per request, each failing after `stall` without progress: a stalled upload fails once, within
    // the service's answer time, not once per SDK attempt, and a half-open breaker's probe ends as fast.
    this.client = new S3Client(
      stall === undefined
        ? location.client
        : {
            ...location.client,
            maxAttempts: 1,
            requestHandler: { socketTimeout: stall, connectionTimeout: stall },
          },
    );
    this.#bucket = location.bucket;
    this.#prefix = location.prefix;
    this.#tmp = tmp;
  }

  async init(): Promise<void> {
    await mkdir(this.#tmp, { recursive: true });
  }

  #key(key: string): string {
    return this.#prefix + key;
  }

  async put(key: string, source: Readable, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo> {
    const digest = new Digest();
    const body = source.pipe(digest);
    source.once('error', (err) => digest.destroy(err));
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.#bucket, Key: this.#key(key), Body: body },
      partSize: PART_SIZE,
      queueSize: 2,
      leavePartsOnError: false,
    });
    const abort = () => void upload.abort();
    options.signal?.addEventListener('abort', abort, { once: true });
    try {
      await upload.done();
    } catch (err) {
      // A failed multipart upload is aborted by lib-storage; a failed single PUT left nothing.
      if (digest.errored) throw digest.errored;
      throw err;
    } finally {
      options.signal?.removeEventListener('abort', abort);
    }
    return this.#verify(key, digest);
  }

  async #verify(key: string, digest: Digest): Promise<ObjectInfo> {
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }));
    const etag = (head.ETag ?? '').replaceAll('"', '');
    const expected = digest.etags();
    // An ETag that is not an MD5 at all (SSE-KMS objects) cannot be checked; the length still is.
    const checkable = /^[0-9a-f]{32}(-\d+)?$/.test(etag);
    if (head.ContentLength !== digest.bytes || (checkable && !expected.includes(etag))) {
      await this.delete(key);
      throw new Error(
        `storage check failed for ${key}: sent ${digest.bytes} bytes (ETag ${expected.join(' or ')}), the server has ${head.ContentLength} (ETag ${etag})`,
      );
    }
    return { size: digest.bytes, mtimeMs: head.LastModified?.getTime() ?? Date.now() };
  }

  async putFile(key: string, path: string): Promise<ObjectInfo> {
    const info = await this.put(key, createReadStream(path));
    await rm(path, { force: true });
    return info;
  }

  async read(key: string, range?: { start: number; end: number }): Promise<Readable> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: this.#key(key),
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      return res.Body as Readable;
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey')
        throw new FilesError('ERR_WEFT_FILES_NOT_FOUND', `No object ${key}`);
      throw err;
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }),
      );
      return { size: head.ContentLength ?? 0, mtimeMs: head.LastModified?.getTime() ?? 0 };
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404 || (err as { name?: string }).name === 'NotFound') return undefined;
      throw err;
    }
  }

  async delete(key: string, options: { prefix?: boolean } = {}): Promise<void> {
    if (!options.prefix) {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }));
      return;
    }
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: `${this.#key(key)}/`,
          ContinuationToken: token,
        }),
      );
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length > 0) {
        await this.client.send(new DeleteObjectsCommand({ Bucket: this.#bucket, Delete: { Objects: keys } }));
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Downloads the object to a local temp file for a processor; `release` removes it. */
  async localPath(key: string): Promise<{ path: string; release(): Promise<void> }> {
    const dir = await mkdtemp(join(this.#tmp, 'copy-'));
    const path = join(dir, 'object');
    try {
      await pipeline(await this.read(key), createWriteStream(path));
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return { path, release: () => rm(dir, { recursive: true, force: true }) };
  }

  async scratch(name: string): Promise<{ dir: string; release(): Promise<void> }> {
    const dir = await mkdtemp(join(this.#tmp, `${name.replace(/[^\w-]/g, '_')}-`));
    return { dir, release: () => rm(dir, { recursive: true, force: true }) };
  }

  close(): void {
    this.client.destroy();
  }
}
