/**
 * Malformed `multipart/form-data` turned into `400 ERR_WEFT_FILES_MULTIPART` before or while busboy reads it:
 * busboy throws plain `Error`s (no code) for a missing boundary, and streamsearch for one over 256 bytes, which
 * would otherwise be answered 500.
 */
import { FilesError } from '../errors.ts';

/** RFC 2046 §5.1.1: 1 to 70 of these characters, the last not a space. */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

function malformed(message: string, cause?: unknown): FilesError {
  return new FilesError('ERR_WEFT_FILES_MULTIPART', message, cause === undefined ? undefined : { cause });
}

/**
 * Throws `ERR_WEFT_FILES_MULTIPART` unless the `Content-Type` of a multipart request has a usable boundary.
 *
 * @example
 * ```ts
 * if (request.isMultipart()) checkMultipartType(request.headers['content-type']);
 * ```
 */
export function checkMultipartType(header: string | undefined): void {
  const params = (header ?? '').split(';').slice(1);
  let boundary: string | undefined;
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'boundary') continue;
    const value = param.slice(eq + 1).trim();
    boundary = value.startsWith('"') && value.endsWith('"') && value.length >= 2 ? value.slice(1, -1) : value;
  }
  if (boundary === undefined || boundary === '')
    throw malformed('The multipart Content-Type has no boundary parameter');
  if (boundary.length > 70)
    throw malformed(
      `The multipart boundary is ${boundary.length} characters long; at most 70 are allowed (RFC 2046)`,
    );
  if (!BOUNDARY.test(boundary))
    throw malformed('The multipart boundary has characters RFC 2046 does not allow (or ends with a space)');
}

/** busboy's own errors: plain `Error`s, known only by their text (it sets no code). */
const PARSER_ERROR = /multipart data|^Multipart: |^Boundary required|needle/;

/**
 * The client's view of an error from reading a multipart body: `ERR_WEFT_FILES_MULTIPART` for busboy's parse
 * errors when the whole body arrived (it was malformed), else undefined (an abort, a limit: handled elsewhere).
 *
 * @example
 * ```ts
 * catch (err) { throw asMultipartError(err, request.raw.complete) ?? err; }
 * ```
 */
export function asMultipartError(err: unknown, bodyComplete: boolean): FilesError | undefined {
  if (err instanceof FilesError || !(err instanceof Error)) return undefined;
  if ((err as { code?: unknown }).code !== undefined) return undefined;
  if (!PARSER_ERROR.test(err.message) || !bodyComplete) return undefined;
  return malformed(`The multipart body is malformed: ${err.message}`, err);
}
