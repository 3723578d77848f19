/**
 * CSV dialects: the encoding (UTF-8 with or without BOM, UTF-16 LE/BE with BOM, else Latin-1), the delimiter
 * (comma, semicolon, tab, pipe) and the quote, found from a sample of the file's first bytes; and the streaming
 * decoder that turns the file into UTF-8 for csv-parse.
 * @module
 */

import { isUtf8 as wholeUtf8 } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';
import { parse } from 'csv-parse/sync';
import { ProcessorError } from './errors.ts';

/**
 * What the bytes are. Latin-1 is read as windows-1252, its superset (as browsers and the WHATWG Encoding Standard
 * read `latin1`): Excel's "CSV" in western locales is that.
 */
export type CsvEncoding = 'utf-8' | 'utf-16le' | 'utf-16be' | 'windows-1252';

/** How a CSV file is written; recorded in the job result. */
export interface CsvDialect {
  encoding: CsvEncoding;
  /** Whether the file starts with a byte order mark (dropped, never part of the first column's name). */
  bom: boolean;
  delimiter: ',' | ';' | '\t' | '|';
  quote: '"' | "'";
}

/** Bytes read to choose the dialect. */
export const SAMPLE_BYTES = 64 * 1024;
/** Records of the sample compared with the header. */
const SAMPLE_RECORDS = 100;
const DELIMITERS = [',', ';', '\t', '|'] as const;

/** The encoding from a byte order mark, and the mark's length. */
function fromBom(head: Uint8Array): { encoding: CsvEncoding; length: number } | undefined {
  if (head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return { encoding: 'utf-8', length: 3 };
  if (head[0] === 0xff && head[1] === 0xfe) return { encoding: 'utf-16le', length: 2 };
  if (head[0] === 0xfe && head[1] === 0xff) return { encoding: 'utf-16be', length: 2 };
  return undefined;
}

/** Valid UTF-8, except maybe for a character cut at the end of the sample. */
function isUtf8(sample: Uint8Array): boolean {
  if (wholeUtf8(sample)) return true;
  // Not valid as a whole: valid only if the fault is a character cut at the very end (a lead byte among the last 3).
  // Otherwise answered without a decoder, whose fatal error (an exception) cost every binary upload's sniffing.
  const tail = Math.max(0, sample.length - 3);
  let lead = sample.length - 1;
  while (lead >= tail && (sample[lead]! & 0xc0) === 0x80) lead--;
  if (lead < tail || sample[lead]! < 0xc0 || !wholeUtf8(sample.subarray(0, lead))) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(sample, { stream: true });
    return true;
  } catch {
    return false;
  }
}

/** The encoding a sample is read in ({@link decodeSample}), without decoding it. */
export function sampleEncoding(head: Uint8Array): { encoding: CsvEncoding; bom: boolean } {
  const mark = fromBom(head);
  return { encoding: mark?.encoding ?? (isUtf8(head) ? 'utf-8' : 'windows-1252'), bom: mark !== undefined };
}

/**
 * The encoding of a file from its first bytes, and that sample decoded (without its BOM, up to its last line
 * break when it is not the whole file).
 *
 * @example
 * ```ts
 * const { encoding, bom, text } = decodeSample(head, head.length < SAMPLE_BYTES);
 * ```
 */
export function decodeSample(
  head: Uint8Array,
  whole: boolean,
  /** {@link sampleEncoding} of `head`, when the caller has it already. */
  found = sampleEncoding(head),
): { encoding: CsvEncoding; bom: boolean; text: string } {
  const { encoding, bom } = found;
  let text = new TextDecoder(encoding).decode(head.subarray(fromBom(head)?.length ?? 0), { stream: !whole });
  if (!whole) {
    const end = text.lastIndexOf('\n');
    if (end > 0) text = text.slice(0, end + 1);
  }
  return { encoding, bom, text };
}

/** How well `text` parses with this delimiter and quote: the header's width and the share of records that match it. */
function fit(text: string, delimiter: string, quote: string): { width: number; share: number } {
  const records = parse(text, {
    delimiter,
    quote,
    escape: quote,
    relax_quotes: true,
    relax_column_count: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    to: SAMPLE_RECORDS + 1,
  }) as string[][];
  // A line of nothing but separators and spaces is no record, whichever separator is tried.
  const rows = records.filter((r) => r.some((cell) => /[^\s,;|]/.test(cell)));
  const [header, ...rest] = rows;
  if (!header) return { width: 0, share: 0 };
  const same = rest.filter((r) => r.length === header.length).length;
  return { width: header.length, share: rest.length === 0 ? 1 : same / rest.length };
}

/** Fields that open with `quote`: at a line start or after a candidate delimiter, spaces allowed before it. */
function quoted(text: string, quote: string): number {
  return text.match(new RegExp(`(^|[,;\\t|]) *${quote}`, 'gm'))?.length ?? 0;
}

/**
 * The quote, `'` only when more fields open with it than with `"` (an apostrophe inside a value is no evidence);
 * then the delimiter under which the sample parses into the most consistent columns: a header of more than one
 * column first, then the largest share of records as wide as the header, then comma before semicolon, tab and
 * pipe. A file of one column (no candidate splits its header) is read with commas.
 *
 * @example
 * ```ts
 * detectDelimiter('name;city\nada;london\n'); // { delimiter: ';', quote: '"' }
 * ```
 */
export function detectDelimiter(text: string): Pick<CsvDialect, 'delimiter' | 'quote'> {
  const quote = quoted(text, "'") > quoted(text, '"') ? "'" : '"';
  let best: { delimiter: CsvDialect['delimiter']; score: number } | undefined;
  for (const delimiter of DELIMITERS) {
    const { width, share } = fit(text, delimiter, quote);
    const score = (width > 1 ? 2 : 0) + share;
    if (best === undefined || score > best.score) best = { delimiter, score };
  }
  return { delimiter: best?.delimiter ?? ',', quote };
}

/**
 * Decodes a CSV file's bytes to UTF-8 (dropping a BOM). UTF-8 is checked as it streams: invalid bytes after ASCII
 * only switch to windows-1252 (ASCII reads the same in both); after other UTF-8 text they mean the file mixes
 * encodings, and fail it with `ERR_WEFT_FILES_CSV_ENCODING`. `encoding` tells what was finally used.
 */
export class CsvDecoder extends Transform {
  encoding: CsvEncoding;
  #decoder: TextDecoder;
  #nonAscii = false;
  #offset = 0;

  constructor(encoding: CsvEncoding) {
    super();
    this.encoding = encoding;
    this.#decoder = new TextDecoder(encoding, { fatal: encoding === 'utf-8' });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      const text = this.#decode(chunk);
      this.#offset += chunk.length;
      done(null, text === '' ? undefined : Buffer.from(text, 'utf8'));
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      const text = this.#decoder.decode();
      done(null, text === '' ? undefined : Buffer.from(text, 'utf8'));
    } catch (err) {
      done(this.#mixed(err));
    }
  }

  #decode(chunk: Buffer): string {
    if (this.encoding !== 'utf-8') return this.#decoder.decode(chunk, { stream: true });
    try {
      const text = this.#decoder.decode(chunk, { stream: true });
      if (!this.#nonAscii && chunk.some((b) => b >= 0x80)) this.#nonAscii = true;
      return text;
    } catch (err) {
      if (this.#nonAscii) throw this.#mixed(err);
      // Everything before this chunk was ASCII: the same text in windows-1252, which reads this chunk too.
      this.encoding = 'windows-1252';
      this.#decoder = new TextDecoder('windows-1252');
      return this.#decoder.decode(chunk, { stream: true });
    }
  }

  #mixed(cause: unknown): ProcessorError {
    return new ProcessorError(
      'ERR_WEFT_FILES_CSV_ENCODING',
      `The CSV file is not valid UTF-8 after byte ${this.#offset}, though UTF-8 text came before: it mixes encodings; save it as UTF-8`,
      { cause },
    );
  }
}
