/**
 * The image processor: metadata from the header, a 256×256 cover thumbnail and a display copy that fits inside
 * 1920×1920, both WebP, auto-rotated by EXIF orientation and written atomically into the job's output folder.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp, { type Metadata, type OutputInfo, type Sharp } from 'sharp';
import { ProcessorError, requireInputFile } from './errors.ts';
import { MAX_RESIZE } from './limits.ts';
import { DEFAULT_VARIANTS, type ImageVariant, variantFile, variantsProblem, within } from './variants.ts';

export { DEFAULT_VARIANTS, type ImageVariant } from './variants.ts';

/** Input of `processImage`. */
export interface ImageJobInput {
  /** Absolute path of the stored original (read only). */
  input: string;
  /** Absolute directory for the derived files; it exists, and temp files are created in it. */
  outDir: string;
  /** sharp's pixel-bomb guard (width × height of the input), e.g. 100_000_000. */
  limitInputPixels: number;
  /** The copies to make. Default {@link DEFAULT_VARIANTS}: a 256×256 WebP thumbnail and a 1920×1920 display copy. */
  variants?: readonly ImageVariant[];
}

/** One derived file. */
export interface DerivedOutput {
  /** `thumbnail.webp` (256×256 cover) or `display.webp` (fits inside 1920×1920, never enlarged). */
  name: string;
  /** Absolute path in `outDir`. */
  path: string;
  /** Media type, `image/webp`. */
  type: string;
  width: number;
  height: number;
  /** Bytes. */
  size: number;
}

/** What the input header says. Width and height are the stored ones, before EXIF rotation. */
export interface ImageMetadata {
  /** `jpeg`, `png`, `webp`, `avif`, `gif` or `tiff`. */
  format: string;
  width: number;
  height: number;
  /** EXIF orientation 1..8, when the file has one. */
  orientation?: number;
  hasAlpha: boolean;
  /** Frames or pages, for multi-page formats; the derived files use the first one. */
  pages?: number;
  /** Colour space as libvips names it (`srgb`, `b-w`, `cmyk`...). */
  space?: string;
  /** Pixels per inch, when the file says. */
  density?: number;
  /** Whether the file carries an EXIF block (stripped from the derived files). */
  exif: boolean;
}

/** Result of `processImage`. */
export interface ImageJobResult {
  metadata: ImageMetadata;
  outputs: DerivedOutput[];
}

/**
 * How many threads libvips may use for one pipeline so that the pool's threads times the worker processes times
 * libvips' own threads do not exceed the cores: max(1, floor(cores / (threads × workers))).
 *
 * `WEFT_THREADS` is the number of pool threads in this process; when unset we assume the pool's default, one
 * thread per core, so libvips gets 1. `WEFT_WORKERS` is the number of worker processes sharing the machine;
 * unset means 1. Invalid values count as unset.
 *
 * @example
 * ```ts
 * libvipsConcurrency({ WEFT_THREADS: '2', WEFT_WORKERS: '2' }, 8); // 2
 * ```
 */
export function libvipsConcurrency(
  env: Record<string, string | undefined>,
  cores = availableParallelism(),
): number {
  const threads = positiveInt(env.WEFT_THREADS) ?? cores;
  const workers = positiveInt(env.WEFT_WORKERS) ?? 1;
  return Math.max(1, Math.floor(cores / (threads * workers)));
}

function positiveInt(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  const n = Number(value);
  return n >= 1 && Number.isSafeInteger(n) ? n : undefined;
}

// libvips' concurrency and cache are process-wide, not per thread: every thread of the pool sets the same values,
// so doing it at module load (once per thread) is idempotent. No operation cache: each job reads a different file,
// so cached operations would only hold memory.
sharp.concurrency(libvipsConcurrency(process.env));
sharp.cache(false);

// The formats users may upload. libvips reads more (SVG, PDF, raw...); SVG in particular is a document, not a
// picture, and is refused here whatever the upload route let through.
const FORMATS = new Set(['jpeg', 'png', 'webp', 'avif', 'gif', 'tiff']);

/**
 * Reads an image's header, then writes `thumbnail.webp` and `display.webp` into `outDir`. Throws `ProcessorError`
 * `ERR_WEFT_FILES_BAD_IMAGE` (corrupt, truncated, forged or unsupported), `ERR_WEFT_FILES_PIXEL_LIMIT` (too many pixels,
 * found from the header without decoding), `ERR_WEFT_FILES_INPUT_MISSING` or `ERR_WEFT_FILES_INVALID_ARGUMENT`.
 *
 * @example
 * ```ts
 * const { metadata, outputs } = await processImage({ input, outDir, limitInputPixels: 100_000_000 });
 * ```
 */
export async function processImage(job: ImageJobInput): Promise<ImageJobResult> {
  checkJob(job);
  await requireInputFile(job.input, 'image');
  const metadata = await readMetadata(job);
  const outputs: DerivedOutput[] = [];
  // One variant after the other: each pipeline already uses the libvips threads this thread is allowed, and a
  // separate decode per variant is cheap because JPEG and WebP shrink on load to near the target size.
  for (const variant of job.variants ?? DEFAULT_VARIANTS) outputs.push(await writeVariant(job, variant));
  return { metadata, outputs };
}

/** Input of `resizeImage`. */
export interface ResizeInput {
  /** Absolute path of the stored original (read only). */
  input: string;
  /** Absolute path to write; written atomically (a temp name, then a rename). */
  output: string;
  /** Bounds in pixels; at least one. The image is never enlarged past its own size. */
  width?: number;
  height?: number;
  /** How the image fits the bounds, as sharp's `fit`: `inside` keeps all of it, `cover` crops to fill them. */
  fit: 'inside' | 'cover' | 'contain';
  format: 'webp' | 'jpeg' | 'png' | 'avif';
  limitInputPixels: number;
}

/** Result of `resizeImage`. */
export interface ResizeResult {
  width: number;
  height: number;
  size: number;
  /** Media type of the output. */
  type: string;
}

/**
 * One resized copy of an image, auto-rotated by EXIF orientation, metadata stripped. Throws the same typed errors as
 * `processImage`, and `ERR_WEFT_FILES_INVALID_ARGUMENT` for bounds outside 1..{@link MAX_RESIZE}.
 *
 * @example
 * ```ts
 * const { width, height } = await resizeImage({ input, output: '/tmp/w320.webp', width: 320, fit: 'inside',
 *   format: 'webp', limitInputPixels: 100_000_000 });
 * ```
 */
export async function resizeImage(job: ResizeInput): Promise<ResizeResult> {
  const bound = (n: number | undefined) => n === undefined || within(n, MAX_RESIZE);
  if (typeof job?.output !== 'string' || job.output === '') invalid('"output" must be a file path');
  if (!bound(job.width) || !bound(job.height) || (job.width === undefined && job.height === undefined))
    invalid(`"width" and "height" must be integers 1..${MAX_RESIZE}, at least one given`);
  if (!['inside', 'cover', 'contain'].includes(job.fit)) invalid('"fit" must be inside, cover or contain');
  if (!['webp', 'jpeg', 'png', 'avif'].includes(job.format))
    invalid('"format" must be webp, jpeg, png or avif');
  const base = { input: job.input, outDir: '-', limitInputPixels: job.limitInputPixels };
  checkJob(base);
  await requireInputFile(job.input, 'image');
  await readMetadata(base);
  let output: { data: Buffer; info: OutputInfo };
  try {
    output = await open(base)
      .rotate()
      .resize(job.width ?? null, job.height ?? null, { fit: job.fit, withoutEnlargement: true })
      .toFormat(job.format, { quality: 80 })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw imageError(err);
  }
  await writeAtomically(job.output, output.data);
  return {
    width: output.info.width,
    height: output.info.height,
    size: output.data.length,
    type: `image/${job.format}`,
  };
}

function checkJob(job: ImageJobInput): void {
  if (typeof job !== 'object' || job === null) invalid('the job input must be an object');
  if (typeof job.input !== 'string' || job.input === '') invalid('"input" must be a file path');
  if (typeof job.outDir !== 'string' || job.outDir === '') invalid('"outDir" must be a directory path');
  const limit = job.limitInputPixels;
  if (!Number.isSafeInteger(limit) || limit < 1) invalid('"limitInputPixels" must be an integer >= 1');
  const problem = job.variants === undefined ? undefined : variantsProblem(job.variants);
  if (problem) invalid(`"variants" ${problem}`);
}

function invalid(message: string): never {
  throw new ProcessorError('ERR_WEFT_FILES_INVALID_ARGUMENT', `processImage: ${message}`);
}

/** A pipeline reading the input with the job's guards: the pixel limit, and failing on any decoder warning. */
function open(job: ImageJobInput): Sharp {
  // failOn 'warning' (sharp's default, and its advice for untrusted input): a truncated or damaged file fails
  // instead of producing a half-grey thumbnail.
  return sharp(job.input, { limitInputPixels: job.limitInputPixels, failOn: 'warning' });
}

async function readMetadata(job: ImageJobInput): Promise<ImageMetadata> {
  let meta: Metadata;
  try {
    // Without sharp's limit here: reading the header decodes no pixel, and checking the size ourselves lets
    // the error say how big the image is. The pipelines that do decode keep the limit.
    meta = await sharp(job.input, { limitInputPixels: false, failOn: 'warning' }).metadata();
  } catch (err) {
    throw imageError(err);
  }
  const format = formatOf(meta);
  if (format === undefined || !FORMATS.has(format)) {
    throw new ProcessorError('ERR_WEFT_FILES_BAD_IMAGE', `unsupported image format "${meta.format}"`);
  }
  // Reading the header is enough to refuse a pixel bomb, long before anything is decoded.
  if (meta.width * meta.height > job.limitInputPixels) throw pixelLimit(job, `${meta.width}×${meta.height}`);
  return {
    format,
    width: meta.width,
    height: meta.height,
    ...(meta.orientation === undefined ? {} : { orientation: meta.orientation }),
    hasAlpha: meta.hasAlpha,
    ...(meta.pages === undefined ? {} : { pages: meta.pages }),
    ...(meta.space === undefined ? {} : { space: meta.space }),
    ...(meta.density === undefined ? {} : { density: meta.density }),
    exif: meta.exif !== undefined && meta.exif.length > 0,
  };
}

/** AVIF is a HEIF container with AV1 inside; HEIF with HEVC is not decodable by the prebuilt libvips. */
function formatOf(meta: Metadata): string | undefined {
  if (meta.format === 'heif') return meta.compression === 'av1' ? 'avif' : undefined;
  return meta.format;
}

async function writeVariant(job: ImageJobInput, variant: ImageVariant): Promise<DerivedOutput> {
  let output: { data: Buffer; info: OutputInfo };
  const { width, height, fit, format, quality = 80 } = variant;
  try {
    output = await open(job)
      .rotate()
      // A cover copy fills its box; the ones kept whole are never enlarged past the image itself.
      .resize(width ?? null, height ?? null, { fit, withoutEnlargement: fit !== 'cover' })
      .toFormat(format, { quality })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw imageError(err);
  }
  const name = variantFile(variant);
  const path = join(job.outDir, name);
  await writeAtomically(path, output.data);
  return {
    name,
    path,
    type: `image/${format}`,
    width: output.info.width,
    height: output.info.height,
    size: output.data.length,
  };
}

/**
 * Writes to a unique temp name in the same folder, then renames over `path`: readers see the old file or the new
 * one, never a half-written one, and a re-run simply replaces the previous output. Not flushed here: the job runner
 * stores each output through the storage port, which fsyncs it (local disk) or uploads it (S3), so flushing in the
 * pool thread would only hold the thread while the disk works.
 */
async function writeAtomically(path: string, data: Uint8Array): Promise<void> {
  const temp = `${path}.${randomUUID()}.tmp`;
  try {
    await writeFile(temp, data);
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

function pixelLimit(job: ImageJobInput, size: string): ProcessorError {
  return new ProcessorError(
    'ERR_WEFT_FILES_PIXEL_LIMIT',
    `the image is ${size} pixels, over the limit of ${job.limitInputPixels} pixels`,
  );
}

/** Maps a sharp error to a typed one; sharp's errors are plain `Error`s, so only the message tells them apart. */
function imageError(err: unknown): ProcessorError {
  const message = err instanceof Error ? err.message : String(err);
  if (/exceeds pixel limit/i.test(message)) {
    return new ProcessorError('ERR_WEFT_FILES_PIXEL_LIMIT', 'the image is over the pixel limit', {
      cause: err,
    });
  }
  // libvips repeats decoder warnings line after line; the first line says it.
  const first = message.split('\n', 1)[0] ?? message;
  return new ProcessorError('ERR_WEFT_FILES_BAD_IMAGE', `not a readable image (${first})`, {
    cause: err,
  });
}
