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
  export default class S3rver {
    constructor(options: S3rverOptions);
    run(): Promise<{ address: string; family: string; port: number }>;
    /** Koa's middleware list (composed when the server starts). */
    middleware: ((ctx: S3rverContext, next: () => Promise<void>) => unknown)[];
    store: { getResourcePath(bucket: string, key: string | undefined, resource: string): string };
    close(): Promise<void>;
  }
}
