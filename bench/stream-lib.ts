/** Helpers of the stream benchmark: the CSV generator, the compiled ingest script and its child processes. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { within } from './lib/harness.ts';
import type { IngestResult } from './stream-ingest.ts';

export const MiB = 2 ** 20;
/** Caps V8's young generation at 2 × 16 MiB (its default maximum before V8 11.x), in the second configuration. */
export const CAPPED = ['--max-semi-space-size=16'];
/** The CPU benchmark: chunks of this many bytes, how many, on how many threads. */
export const CHUNK = 64 * 1024;
export const CHUNKS = 1_200;
export const THREADS = 2;

/** `100 MiB`, `1 GiB`. */
export const label = (bytes: number): string =>
  bytes >= 1024 * MiB ? `${bytes / (1024 * MiB)} GiB` : `${bytes / MiB} MiB`;

/** Writes a CSV of about `bytes` bytes; every 10 007th row has an invalid email. Returns the data rows written. */
export async function generateCsv(path: string, bytes: number): Promise<number> {
  let rows = 0;
  let written = 0;
  function* chunks(): Generator<string> {
    yield 'id,name,email,amount,created_at\n';
    while (written < bytes) {
      const lines: string[] = [];
      for (let k = 0; k < 10_000; k++) {
        const i = ++rows;
        const email = i % 10_007 === 0 ? 'nobody' : `person${i}@example.com`;
        lines.push(
          `${i},Person ${i},${email},${((i * 7919) % 100_000) / 100},2024-0${1 + (i % 9)}-1${i % 10}T12:34:56Z`,
        );
      }
      const text = `${lines.join('\n')}\n`;
      written += text.length;
      yield text;
    }
  }
  await pipeline(Readable.from(chunks()), createWriteStream(path, { highWaterMark: MiB }));
  return rows;
}

/** Where the compiled ingest script goes: inside the package (so `weft/*` resolves to dist/), and gitignored. */
const COMPILED = new URL('./results/stream-js/', import.meta.url);

/**
 * Compiles the ingest script and its task module to JavaScript; returns the script's path. Run as .ts, each thread
 * would also load Node's type stripper, which a service running compiled code does not pay and is not weft's memory.
 */
export async function compileIngest(): Promise<string> {
  for (const file of ['stream-ingest.ts', 'fixtures/stream-tasks.ts']) {
    const source = await readFile(new URL(file, import.meta.url), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        rewriteRelativeImportExtensions: true,
        verbatimModuleSyntax: true,
      },
    });
    const out = new URL(file.replace(/\.ts$/, '.js'), COMPILED);
    await mkdir(new URL('.', out), { recursive: true });
    await writeFile(out, outputText);
  }
  return fileURLToPath(new URL('stream-ingest.js', COMPILED));
}

/** One ingest configuration. */
export interface Subject {
  name: string;
  mode: 'streaming' | 'naive';
  size: number;
  /** Node/V8 flags of the child process. */
  flags: string[];
}

/** Runs one ingest (the compiled `script`) in a child process; kills it (and fails) after `ms`. */
export async function ingest(
  script: string,
  subject: Subject,
  csv: string,
  db: string,
  ms: number,
): Promise<IngestResult> {
  const child = spawn(process.execPath, [...subject.flags, script, subject.mode, csv, db], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  try {
    const [code] = (await within(once(child, 'close'), ms, `${subject.name}`)) as [number | null];
    if (code !== 0)
      throw new Error(`${subject.name} exited with ${code}: ${stderr.trim().split('\n').at(-1)}`);
    return JSON.parse(stdout) as IngestResult;
  } finally {
    if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL');
    for (const suffix of ['', '-wal', '-shm']) await rm(`${db}${suffix}`, { force: true });
  }
}
