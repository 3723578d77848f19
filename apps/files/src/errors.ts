/**
 * Errors of the file service: one class with a stable `code` and the HTTP status it maps to, so routes answer
 * `{ error: { code, message } }` and callers branch on `code`, never on message text.
 */

/** Every code the file service answers with or throws. */
export type FilesErrorCode =
  | 'ERR_WEFT_FILES_CONFIG'
  | 'ERR_WEFT_FILES_TOO_LARGE'
  | 'ERR_WEFT_FILES_EMPTY'
  | 'ERR_WEFT_FILES_UNAUTHORIZED'
  | 'ERR_WEFT_FILES_NOT_FOUND'
  | 'ERR_WEFT_FILES_BAD_REQUEST'
  | 'ERR_WEFT_FILES_RANGE'
  | 'ERR_WEFT_FILES_CONFLICT'
  | 'ERR_WEFT_FILES_CHECKSUM'
  | 'ERR_WEFT_FILES_ABORTED'
  | 'ERR_WEFT_FILES_JOB_TIMEOUT'
  | 'ERR_WEFT_FILES_DATABASE'
  | 'ERR_WEFT_FILES_REDIS'
  | 'ERR_WEFT_FILES_BUSY'
  | 'ERR_WEFT_FILES_NO_SPACE'
  | 'ERR_WEFT_FILES_TIMEOUT'
  | 'ERR_WEFT_FILES_MULTIPART'
  | 'ERR_WEFT_FILES_QUEUE_UNAVAILABLE'
  | 'ERR_WEFT_FILES_DATABASE_UNAVAILABLE'
  | 'ERR_WEFT_FILES_STORAGE_UNAVAILABLE';

const STATUS: Record<FilesErrorCode, number> = {
  ERR_WEFT_FILES_CONFIG: 500,
  ERR_WEFT_FILES_TOO_LARGE: 413,
  ERR_WEFT_FILES_EMPTY: 400,
  ERR_WEFT_FILES_UNAUTHORIZED: 401,
  ERR_WEFT_FILES_NOT_FOUND: 404,
  ERR_WEFT_FILES_BAD_REQUEST: 400,
  ERR_WEFT_FILES_RANGE: 416,
  ERR_WEFT_FILES_CONFLICT: 409,
  // tus's checksum extension: "460 Checksum Mismatch".
  ERR_WEFT_FILES_CHECKSUM: 460,
  ERR_WEFT_FILES_ABORTED: 400,
  ERR_WEFT_FILES_JOB_TIMEOUT: 500,
  ERR_WEFT_FILES_DATABASE: 503,
  ERR_WEFT_FILES_REDIS: 503,
  ERR_WEFT_FILES_BUSY: 503,
  ERR_WEFT_FILES_NO_SPACE: 507,
  ERR_WEFT_FILES_TIMEOUT: 408,
  ERR_WEFT_FILES_MULTIPART: 400,
  ERR_WEFT_FILES_QUEUE_UNAVAILABLE: 503,
  ERR_WEFT_FILES_DATABASE_UNAVAILABLE: 503,
  ERR_WEFT_FILES_STORAGE_UNAVAILABLE: 503,
};

/** No space left on the device (or over quota): the storage adapters' errors that become `ERR_WEFT_FILES_NO_SPACE`. */
export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** An error of the file service with a stable `code` and its HTTP `statusCode`. */
export class FilesError extends Error {
  override name = 'FilesError';
  readonly code: FilesErrorCode;
  readonly statusCode: number;

  constructor(code: FilesErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.statusCode = STATUS[code];
  }
}
