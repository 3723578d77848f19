/**
 * The external services some tests need (Redis, PostgreSQL, RabbitMQ): their URLs come from the environment, defaulting to
 * this machine's local ports; `sharedBackends` gives the nodes of a test a queue, a schema and a bucket of their own. When one does not answer, `serviceSkip` returns the reason to skip (printed once),
 * unless `WEFT_REQUIRE_SERVICES=1` (CI), where it throws and the test file fails.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Redis } from 'ioredis';
import pg from 'pg';
import S3rver from 's3rver';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

const required = process.env.WEFT_REQUIRE_SERVICES === '1';

/**
 * A RabbitMQ queue name of its own for a test's service (`QUEUE_URL`), and `cleanup` to delete what the adapter
 * declared for it.
 */
export function rabbitBackends(tag: string): { urls: { queueUrl: string }; cleanup(): Promise<void> } {
  const name = `${tag}-${randomUUID()}`;
  return {
    urls: { queueUrl: `${AMQP_URL}?queue=${name}` },
    async cleanup() {
      const { connect: amqpConnect } = await import('amqplib');
      const model = await amqpConnect(AMQP_URL);
      try {
        const ch = await model.createChannel();
        for (const q of [
          name,
          `${name}.dead`,
          ...Array.from({ length: 31 }, (_, k) => `${name}.retry.${k}`),
        ]) {
          await ch.deleteQueue(q);
        }
        await ch.deleteExchange(`${name}.dead`);
        await ch.deleteExchange(`${name}.ready`);
      } finally {
        await model.close();
      }
    },
  };
}

/** A fresh PostgreSQL schema, tagged `tag`: the URL whose `search_path` is it, and `cleanup` to drop it. */
export async function pgSchema(
  tag: string,
): Promise<{ url: string; schema: string; cleanup(): Promise<void> }> {
  const schema = `${tag}_${randomUUID().slice(0, 8)}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const database = new URL(DATABASE_URL);
  database.searchParams.set('options', `-c search_path=${schema}`);
  return {
    url: database.href,
    schema,
    async cleanup() {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    },
  };
}

/** Resolves true when a TCP connection to `url`'s host and port opens within `ms`. */
function answers(url: string, ms = 2_000): Promise<boolean> {
  const u = new URL(url);
  const defaults: Record<string, number> = { 'redis:': 6379, 'amqp:': 5672, 'amqps:': 5671 };
  const port = Number(u.port || (defaults[u.protocol] ?? 5432));
  return new Promise((resolve) => {
    const socket = connect({ host: u.hostname, port });
    const done = (ok: boolean) => {
      socket.destroy();
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** `url` (a backend's) with its host and port replaced by a local proxy's, such as a test's `faultProxy`. */
export function via(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.href;
}

/**
 * `false` when every named service answers; else the reason to skip, printed. Under `WEFT_REQUIRE_SERVICES=1` a
 * missing service throws instead.
 *
 * @example
 * ```ts
 * const skip = await serviceSkip({ redis: REDIS_URL });
 * describe('the Redis bus', { skip }, () => { ... });
 * ```
 */
export async function serviceSkip(services: Record<string, string>): Promise<string | false> {
  const missing: string[] = [];
  for (const [name, url] of Object.entries(services)) {
    if (!(await answers(url))) missing.push(`${name} at ${new URL(url).host}`);
  }
  if (missing.length === 0) return false;
  const reason = `${missing.join(' and ')} did not answer`;
  if (required) throw new Error(`${reason}; WEFT_REQUIRE_SERVICES=1 forbids skipping`);
  console.log(`# skipped: ${reason} (set REDIS_URL / DATABASE_URL / AMQP_URL to point elsewhere)`);
  return reason;
}

/**
 * Adds to s3rver the two multipart calls it lacks and tus's S3 store makes (real S3 and MinIO have them): ListParts
 * (`GET /bucket/key?uploadId=`) from the parts s3rver keeps on disk, and AbortMultipartUpload (`DELETE …?uploadId=`).
 * Call before `run()`.
 */
export function withMultipartCalls(s3: S3rver): S3rver {
  s3.middleware.unshift(async (ctx, next) => {
    const uploadId = ctx.query.uploadId;
    const [, bucket = '', ...key] = ctx.path.split('/');
    const listing = ctx.method === 'GET' && ctx.query.partNumber === undefined;
    if (!uploadId || !/^[0-9a-f]+$/.test(uploadId) || !(listing || ctx.method === 'DELETE')) return next();
    const dir = join(s3.store.getResourcePath(bucket, undefined, 'uploads'), uploadId);
    if (ctx.method === 'DELETE') {
      rmSync(dir, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    if (!existsSync(dir)) {
      // Completed or aborted, as S3 answers.
      ctx.status = 404;
      ctx.type = 'application/xml';
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message><UploadId>${uploadId}</UploadId></Error>`;
      return;
    }
    const numbers = readdirSync(dir)
      .filter((f) => /^\d+$/.test(f))
      .map(Number)
      .sort((a, b) => a - b);
    const parts = numbers.map((n) => {
      const st = statSync(join(dir, String(n)));
      const md5 = readFileSync(join(dir, `${n}.md5`), 'utf8');
      return `<Part><PartNumber>${n}</PartNumber><LastModified>${st.mtime.toISOString()}</LastModified><ETag>"${md5}"</ETag><Size>${st.size}</Size></Part>`;
    });
    ctx.type = 'application/xml';
    ctx.body = `<?xml version="1.0" encoding="UTF-8"?><ListPartsResult><Bucket>${bucket}</Bucket><Key>${key.join('/')}</Key><UploadId>${uploadId}</UploadId><IsTruncated>false</IsTruncated>${parts.join('')}</ListPartsResult>`;
  });
  return s3;
}

/** Writes `content` whole to `path` (its folder made first), and returns its length and MD5. */
async function writeWhole(path: string, content: Readable | Buffer): Promise<{ size: number; md5: string }> {
  await mkdir(dirname(path), { recursive: true });
  const md5 = createHash('md5');
  let size = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      md5.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  await pipeline(
    Buffer.isBuffer(content) ? Readable.from([content]) : content,
    count,
    createWriteStream(path),
  );
  return { size, md5: md5.digest('hex') };
}

/**
 * s3rver (3.7) answers a PUT of an object or of a part once it has read the body, not once its file is written: a
 * HEAD or GET right after the answer may find the file short, even empty, and the storage's check after every put
 * (rightly) refuses the upload. These two store calls answer once the file is whole, as S3 and MinIO do.
 * Call before `run()`.
 */
export function withFinishedWrites(s3: S3rver): S3rver {
  const store = s3.store;
  store.putObject = async (object) => {
    const written = await writeWhole(
      store.getResourcePath(object.bucket, object.key, 'object'),
      object.content,
    );
    await store.putMetadata(object.bucket, object.key, object.metadata, written.md5);
    return written;
  };
  store.putPart = async (bucket, uploadId, partNumber, content) => {
    const path = join(store.getResourcePath(bucket, undefined, 'uploads'), uploadId, String(partNumber));
    const written = await writeWhole(path, content);
    await writeFile(`${path}.md5`, written.md5);
    return written;
  };
  return s3;
}

/**
 * s3rver on loopback (a port the system picks) keeping its files in `directory`, with the bucket `bucket`, its writes
 * answered once whole ({@link withFinishedWrites}) unless `finishedWrites: false`, and with the multipart calls tus
 * needs ({@link withMultipartCalls}) when `multipart`. `S3RVER_DEBUG=1` makes it log its requests.
 *
 * @example
 * ```ts
 * const s3 = loopbackS3rver(dir, 'media');
 * const { port } = await s3.run();
 * // ... STORAGE_URL=s3://S3RVER:S3RVER@media/prefix?endpoint=http://127.0.0.1:${port}
 * await s3.close();
 * ```
 */
export function loopbackS3rver(
  directory: string,
  bucket: string,
  options: { finishedWrites?: boolean; multipart?: boolean } = {},
): S3rver {
  const s3 = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: process.env.S3RVER_DEBUG !== '1',
    directory,
    configureBuckets: [{ name: bucket }],
  });
  if (options.multipart) withMultipartCalls(s3);
  return options.finishedWrites === false ? s3 : withFinishedWrites(s3);
}

/** What several nodes share in a test: a Redis queue, a PostgreSQL schema and an s3rver bucket, all its own. */
export interface SharedBackends {
  /** For in-process services (`startService` overrides). */
  urls: { queueUrl: string; databaseUrl: string; storageUrl: string };
  /** The same as environment variables, for `weft start`. */
  env: { QUEUE_URL: string; DATABASE_URL: string; STORAGE_URL: string };
  /** The queue's name; its event stream is `bull:<queue>:weft-events`. */
  queue: string;
  /** The PostgreSQL schema the nodes use (their `search_path`). */
  schema: string;
  /** A connection for the test's own queries. */
  admin: pg.Client;
  /** Deletes the queue's keys, the schema, the bucket and its directory; closes the connection. */
  cleanup(): Promise<void>;
}

/**
 * Starts s3rver on loopback and makes a fresh PostgreSQL schema and Redis queue name, tagged `tag`.
 *
 * @example
 * ```ts
 * const shared = await sharedBackends('twonode');
 * const a = await startService(shared.urls);
 * // ...
 * await shared.cleanup();
 * ```
 */
export async function sharedBackends(tag: string): Promise<SharedBackends> {
  const id = randomUUID().slice(0, 8);
  const queue = `${tag}-${id}`;
  const schema = `${tag}_${id}`;
  const dir = mkdtempSync(join(tmpdir(), `files-${tag}-s3-`));
  const s3 = loopbackS3rver(dir, 'media', { multipart: true });
  const { port } = await s3.run();
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const database = new URL(DATABASE_URL);
  database.searchParams.set('options', `-c search_path=${schema}`);
  const urls = {
    queueUrl: `${REDIS_URL}?queue=${queue}`,
    databaseUrl: database.href,
    storageUrl: `s3://S3RVER:S3RVER@media/${id}?endpoint=http://127.0.0.1:${port}`,
  };
  return {
    urls,
    env: { QUEUE_URL: urls.queueUrl, DATABASE_URL: urls.databaseUrl, STORAGE_URL: urls.storageUrl },
    queue,
    schema,
    admin,
    async cleanup() {
      const { BullQueue } = await import('../src/queue/bullmq.ts');
      const q = await BullQueue.open({ url: urls.queueUrl, leaseMs: 1_000, retryDelayMs: 100 });
      await q.obliterate();
      await q.close();
      const redis = new Redis(REDIS_URL);
      await redis.del(`bull:${queue}:weft-events`, `bull:${queue}:weft-events:seq`);
      redis.disconnect();
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
      await s3.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
