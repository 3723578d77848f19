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
  | 'ERR_WEFT_FILES_FORBIDDEN'
  | 'ERR_WEFT_FILES_LINK_INVALID'
  | 'ERR_WEFT_FILES_LINK_EXPIRED'
  | 'ERR_WEFT_FILES_QUOTA'
  | 'ERR_WEFT_FILES_NOT_FOUND'
  | 'ERR_WEFT_FILES_BAD_REQUEST'
  | 'ERR_WEFT_FILES_RANGE'
  | 'ERR_WEFT_FILES_CONFLICT'
  | 'ERR_WEFT_FILES_NO_ROWS'
  | 'ERR_WEFT_FILES_CHECKSUM'
  | 'ERR_WEFT_FILES_UNSUPPORTED'
  | 'ERR_WEFT_FILES_BAD_IMAGE'
  | 'ERR_WEFT_FILES_OVERLOADED'
  | 'ERR_WEFT_FILES_RATE_LIMITED'
  | 'ERR_WEFT_FILES_ABORTED'
  | 'ERR_WEFT_FILES_JOB_TIMEOUT'
  | 'ERR_WEFT_FILES_PROCESSOR_UNKNOWN'
  | 'ERR_WEFT_FILES_DATABASE'
  | 'ERR_WEFT_FILES_REDIS'
  | 'ERR_WEFT_FILES_RABBITMQ'
  | 'ERR_WEFT_FILES_BUSY'
  | 'ERR_WEFT_FILES_NO_SPACE'
  | 'ERR_WEFT_FILES_TIMEOUT'
  | 'ERR_WEFT_FILES_MULTIPART'
  | 'ERR_WEFT_FILES_QUEUE_UNAVAILABLE'
  | 'ERR_WEFT_FILES_DATABASE_UNAVAILABLE'
  | 'ERR_WEFT_FILES_STORAGE_UNAVAILABLE'
  | 'ERR_WEFT_FILES_WEBHOOK_URL'
  | 'ERR_WEFT_FILES_WEBHOOK_SIGNATURE'
  | 'ERR_WEFT_FILES_WEBHOOK_REJECTED'
  | 'ERR_WEFT_FILES_WEBHOOK_FAILED'
  | 'ERR_WEFT_FILES_WEBHOOK_TIMEOUT'
  | 'ERR_WEFT_FILES_WEBHOOK_UNREACHABLE';

const STATUS: Record<FilesErrorCode, number> = {
  ERR_WEFT_FILES_CONFIG: 500,
  ERR_WEFT_FILES_TOO_LARGE: 413,
  ERR_WEFT_FILES_EMPTY: 400,
  ERR_WEFT_FILES_UNAUTHORIZED: 401,
  ERR_WEFT_FILES_FORBIDDEN: 403,
  ERR_WEFT_FILES_LINK_INVALID: 403,
  ERR_WEFT_FILES_LINK_EXPIRED: 403,
  ERR_WEFT_FILES_QUOTA: 507,
  ERR_WEFT_FILES_NOT_FOUND: 404,
  ERR_WEFT_FILES_BAD_REQUEST: 400,
  ERR_WEFT_FILES_RANGE: 416,
  ERR_WEFT_FILES_CONFLICT: 409,
  // The file has no CSV table (yet): not CSV, or its CSV job has not completed.
  ERR_WEFT_FILES_NO_ROWS: 409,
  // tus's checksum extension: "460 Checksum Mismatch".
  ERR_WEFT_FILES_CHECKSUM: 460,
  // Asked for something this file's type does not have (a resized copy of a CSV).
  ERR_WEFT_FILES_UNSUPPORTED: 415,
  // The file is not an image sharp can read, or is over the pixel limit (its job says the same).
  ERR_WEFT_FILES_BAD_IMAGE: 422,
  ERR_WEFT_FILES_OVERLOADED: 503,
  ERR_WEFT_FILES_RATE_LIMITED: 429,
  ERR_WEFT_FILES_ABORTED: 400,
  ERR_WEFT_FILES_JOB_TIMEOUT: 500,
  // A job whose kind no processor of this process runs (a plug-in configured on another node, or removed).
  ERR_WEFT_FILES_PROCESSOR_UNKNOWN: 500,
  ERR_WEFT_FILES_DATABASE: 503,
  ERR_WEFT_FILES_REDIS: 503,
  ERR_WEFT_FILES_RABBITMQ: 503,
  ERR_WEFT_FILES_BUSY: 503,
  ERR_WEFT_FILES_NO_SPACE: 507,
  ERR_WEFT_FILES_TIMEOUT: 408,
  ERR_WEFT_FILES_MULTIPART: 400,
  ERR_WEFT_FILES_QUEUE_UNAVAILABLE: 503,
  ERR_WEFT_FILES_DATABASE_UNAVAILABLE: 503,
  ERR_WEFT_FILES_STORAGE_UNAVAILABLE: 503,
  // A per-upload webhook URL that is malformed or not allowed; a webhook whose signature does not verify.
  ERR_WEFT_FILES_WEBHOOK_URL: 400,
  ERR_WEFT_FILES_WEBHOOK_SIGNATURE: 400,
  // How a webhook delivery (a job) failed: refused for good (4xx), failed for now (5xx, 408, 429), no answer.
  ERR_WEFT_FILES_WEBHOOK_REJECTED: 502,
  ERR_WEFT_FILES_WEBHOOK_FAILED: 502,
  ERR_WEFT_FILES_WEBHOOK_TIMEOUT: 504,
  ERR_WEFT_FILES_WEBHOOK_UNREACHABLE: 502,
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
