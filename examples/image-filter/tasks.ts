import { transfer } from 'weftjs/pool/task';

/** The pixels of the last result this thread sent, kept only to show that sending it detached them. */
let lastSent: Uint8ClampedArray | undefined;

/**
 * Turns RGBA pixels to grey in place (Rec. 601 luma in integer maths) and moves them back to the caller.
 * The array arrived without a copy (`{ transfer: [pixels.buffer] }` on `run`) and leaves without one.
 */
export function grayscale(pixels: Uint8ClampedArray<ArrayBuffer>) {
  for (let i = 0; i < pixels.length; i += 4) {
    const y = (77 * pixels[i]! + 150 * pixels[i + 1]! + 29 * pixels[i + 2]!) >> 8;
    pixels[i] = y;
    pixels[i + 1] = y;
    pixels[i + 2] = y;
  }
  lastSent = pixels;
  return transfer(pixels, [pixels.buffer]);
}

/** The byte length the thread now sees for the last result it sent: 0 once the buffer was moved out. */
export function lastSentByteLength(): number {
  return lastSent?.byteLength ?? -1;
}
