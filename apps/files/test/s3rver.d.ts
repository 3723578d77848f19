// s3rver ships no type declarations: the part of its API the tests use.
declare module 's3rver' {
  interface S3rverOptions {
    port?: number;
    address?: string;
    silent?: boolean;
    directory: string;
    configureBuckets?: { name: string; configs?: unknown[] }[];
  }
  interface S3rverContext {
    method: string;
    path: string;
    query: Record<string, string | undefined>;
    status: number;
    body: unknown;
    type: string;
  }
  interface S3rverObject {
    bucket: string;
    key: string;
    metadata: Record<string, string>;
    content: import('node:stream').Readable | Buffer;
  }
  /** Its filesystem store; `putObject` and `putPart` may be replaced (see withFinishedWrites). */
  interface S3rverStore {
    getResourcePath(bucket: string, key: string | undefined, resource: string): string;
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5?: string): Promise<void>;
    putObject(object: S3rverObject): Promise<{ size: number; md5: string }>;
    putPart(
      bucket: string,
      uploadId: string,
      partNumber: number,
      content: import('node:stream').Readable,
    ): Promise<{ size: number; md5: string }>;
  }
  export default class S3rver {
    constructor(options: S3rverOptions);
    run(): Promise<{ address: string; family: string; port: number }>;
    /** Koa's middleware list (composed when the server starts). */
    middleware: ((ctx: S3rverContext, next: () => Promise<void>) => unknown)[];
    store: S3rverStore;
    close(): Promise<void>;
  }
}
