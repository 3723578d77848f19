// Uploads a file to the file service with tus-js-client: a lost connection is retried from where it stopped.
//   FILES_URL=http://localhost:3000 node apps/files/examples/tus-upload.ts photo.jpg
import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import * as tus from 'tus-js-client';

const path = process.argv[2] ?? 'photo.jpg';
const service = process.env.FILES_URL ?? 'http://localhost:3000';
const token = process.env.FILES_TOKEN;

const upload = new tus.Upload(createReadStream(path), {
  endpoint: `${service}/uploads/`,
  uploadSize: statSync(path).size,
  metadata: { filename: basename(path) },
  headers: token ? { authorization: `Bearer ${token}` } : {},
  chunkSize: 8 * 1024 * 1024, // one PATCH per 8 MiB; an interrupted one is resent from the server's offset
  retryDelays: [0, 1_000, 3_000, 5_000],
  onProgress: (sent, total) => process.stderr.write(`\r${((sent / total) * 100).toFixed(1)}%`),
  onError: (err) => {
    console.error(`\nupload failed: ${err.message}`);
    process.exitCode = 1;
  },
  onSuccess: async ({ lastResponse }) => {
    // The final answer names the file; it is recorded (durably) and its jobs are queued.
    const id = lastResponse.getHeader('x-weft-file-id');
    const file = (await (await fetch(`${service}/files/${id}`)).json()) as { type: string; size: number };
    console.log(`\nfile ${id}: ${file.type}, ${file.size} bytes`);
  },
});
upload.start();
