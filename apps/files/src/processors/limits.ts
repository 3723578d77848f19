/** Limits the processors and the routes that call them share (no sharp here: the main thread imports this). */

/** Largest width or height `resizeImage` makes (`GET /files/:id/image?w=&h=`). */
export const MAX_RESIZE = 2_560;
