/**
 * What an upload's bytes pass through on their way to storage: a size limit enforced as they arrive, SHA-256 and
 * length computed while streaming, and the first bytes kept to sniff the real type once the upload is whole.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { fileTypeFromBuffer } from 'file-type';
import { FilesError } from './errors.ts';
import { decodeSample, sampleEncoding } from './processors/dialect.ts';
import { ProcessorRegistry } from './processors/registry.ts';
import type { JobKind } from './queue/types.ts';

/** Bytes kept for sniffing: file-type reads at most 4 100 for the formats here. */
const HEAD_BYTES = 4_100;

/** The kinds of a file when the process has no registry of its own: the built-in processors' alone. */
const BUILT_IN_ONLY = ProcessorRegistry.builtIn();

/** Counts, hashes and limits the bytes that pass; keeps the head for {@link sniffType}. */
export class Inspector extends Transform {
  readonly #limit: number;
  readonly #hash: Hash = createHash('sha256');
  readonly #head: Buffer[] = [];
  #headBytes = 0;
  #size = 0;

  constructor(limit: number) {
    super();
    this.#limit = limit;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#size += chunk.length;
    if (this.#size > this.#limit) {
      done(
        new FilesError(
          'ERR_WEFT_FILES_TOO_LARGE',
          `The upload is larger than the limit of ${this.#limit} bytes`,
        ),
      );
      return;
    }
    if (this.#headBytes < HEAD_BYTES) {
      const part = chunk.subarray(0, HEAD_BYTES - this.#headBytes);
      this.#head.push(Buffer.from(part)); // a copy: the chunk's memory may be reused by the source
      this.#headBytes += part.length;
    }
    this.#hash.update(chunk);
    done(null, chunk);
  }

  get size(): number {
    return this.#size;
  }

  /** The hex SHA-256 of everything that passed; call once, after the stream ended. */
  digest(): string {
    return this.#hash.digest('hex');
  }

  get head(): Buffer {
    return Buffer.concat(this.#head);
  }
}

/**
 * The type of a file from its first bytes, never from its name or the client's header: an image format sharp
 * reads, another binary format file-type knows, `text/csv` for delimited text, `text/plain`, else
 * `application/octet-stream`.
 */
export async function sniffType(head: Uint8Array): Promise<string> {
  const found = await fileTypeFromBuffer(head);
  if (found) return found.mime;
  const text = asText(head);
  if (text === undefined) return 'application/octet-stream';
  return looksDelimited(text) ? 'text/csv' : 'text/plain';
}

/**
 * The head as text, in the encodings the CSV processor reads (see processors/dialect.ts): UTF-8 or UTF-16 with a
 * BOM, UTF-8, else Latin-1, where control characters (not tab, line breaks, form feed or escape) mean binary.
 */
function asText(head: Uint8Array): string | undefined {
  if (head.length === 0) return undefined;
  const whole = head.length < HEAD_BYTES;
  const found = sampleEncoding(head);
  if (found.bom) {
    // UTF-8 or UTF-16 with a BOM: read as decoded.
    const { text } = decodeSample(head, whole, found);
    return text.includes('\u0000') ? undefined : text;
  }
  // Without a BOM, binary is told from the bytes before anything is decoded (most uploads that reach here are
  // binary): the control characters are the same bytes in windows-1252, and U+0000 is a zero byte in UTF-8. Only the
  // bytes the decoded sample keeps count: up to the last line feed when the head is not the whole file.
  const lf = whole ? -1 : head.lastIndexOf(0x0a);
  const kept = lf > 0 ? head.subarray(0, lf + 1) : head;
  const binary =
    found.encoding === 'windows-1252' ? kept.some((b) => LATIN1_BINARY[b] === 1) : kept.includes(0);
  return binary ? undefined : decodeSample(head, whole, found).text;
}

/** Control characters that mean binary in windows-1252 text: C0 controls but tab, line feed, CR, form feed and escape. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what tells binary apart
const LATIN1_CONTROL = /[\u0000-\u0008\u000b\u000e-\u001a\u001c-\u001f]/;
/** 1 at the bytes that decode to {@link LATIN1_CONTROL} in windows-1252 (the same code points). */
const LATIN1_BINARY = Uint8Array.from({ length: 256 }, (_, b) =>
  LATIN1_CONTROL.test(String.fromCharCode(b)) ? 1 : 0,
);

/**
 * Delimited text: a first line with a delimiter, and at least half of the next lines (up to 20) with it too, so a
 * CSV with some broken rows is still one, and prose with a comma in its first line is not.
 */
function looksDelimited(text: string): boolean {
  const lines = text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .filter((l) => l !== '');
  const [first = '', ...rest] = lines;
  const next = rest.slice(0, 20);
  return [',', ';', '\t', '|'].some(
    (d) => first.includes(d) && next.filter((l) => l.includes(d)).length * 2 >= next.length,
  );
}

/**
 * Every kind of job a file of this type gets: a built-in processor's, then the plug-ins' that match it (the
 * built-ins' alone without `processors`).
 */
export function kindsFor(type: string, processors?: Pick<ProcessorRegistry, 'kindsFor'>): JobKind[] {
  return (processors ?? BUILT_IN_ONLY).kindsFor(type);
}

/**
 * The jobs a file of this type gets at its upload: of {@link kindsFor}, those that run after none of the others
 * (the rest are queued as the steps of their chains complete).
 */
export function jobsFor(
  type: string,
  processors?: Pick<ProcessorRegistry, 'kindsFor' | 'startKinds'>,
): JobKind[] {
  const all = kindsFor(type, processors);
  return processors ? processors.startKinds(all) : all;
}

/** Longest stored name, in UTF-16 code units (what JavaScript, SQLite and the JSON answers count). */
const MAX_NAME = 200;
/** Extensions longer than this are not kept apart when a long name is cut. */
const MAX_EXTENSION = 16;

/**
 * Dropped from names: control characters (C0, DEL, C1), the bidirectional controls that make `txt.exe` look like
 * `exe.txt` (U+061C, U+200E/U+200F, U+202A–U+202E, U+2066–U+2069), and line/paragraph separators.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

// Made on the first name that needs cutting, not at load: the first Intl object a process makes maps ICU's data
// (this one added about 2.5 MB to a bare Node 24 process), which an idle worker whose names all fit never needs
// (docs/files.md#memory).
let graphemes: Intl.Segmenter | undefined;

/** The longest prefix of `text` of whole grapheme clusters (an emoji, a letter with its accents) in `max` units. */
function cutGraphemes(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = 0;
  graphemes ??= new Intl.Segmenter(undefined, { granularity: 'grapheme' });
  for (const { index, segment } of graphemes.segment(text)) {
    if (index + segment.length > max) break;
    end = index + segment.length;
  }
  return text.slice(0, end);
}

/**
 * A file name safe to store and show: the last path segment only (no traversal), no control or bidi-control
 * characters, Unicode NFC, at most 200 UTF-16 units keeping the extension, cut between grapheme clusters (never
 * inside an emoji or a combining sequence); `upload` when nothing usable is left.
 *
 * @example
 * ```ts
 * sanitizeName('../../etc/invoice\u202Efdp.exe'); // 'invoicefdp.exe'
 * ```
 */
export function sanitizeName(raw: string | undefined): string {
  if (!raw) return 'upload';
  let name = raw.normalize('NFC');
  name = name.slice(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1);
  name = name.replace(UNSAFE, '').trim();
  if (name === '' || name === '.' || name === '..') return 'upload';
  if (name.length > MAX_NAME) {
    const dot = name.lastIndexOf('.');
    const ext = dot > 0 && name.length - dot <= MAX_EXTENSION ? name.slice(dot) : '';
    name = cutGraphemes(name.slice(0, name.length - ext.length), MAX_NAME - ext.length).trimEnd() + ext;
  }
  return name;
}
