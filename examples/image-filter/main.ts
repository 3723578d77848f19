import { Pool } from 'weftjs/pool';

const WIDTH = 1920;
const HEIGHT = 1080;

// One thread, so the second task runs where the first one ran and can look at what it sent.
const pool = new Pool<typeof import('./tasks.ts')>({
  filename: new URL('./tasks.ts', import.meta.url),
  maxThreads: 1,
});

/** The test image: red grows left to right, green top to bottom, blue is constant, opaque. */
function gradient(x: number, y: number): [number, number, number, number] {
  return [Math.round((x * 255) / (WIDTH - 1)), Math.round((y * 255) / (HEIGHT - 1)), 128, 255];
}

const pixels = new Uint8ClampedArray(WIDTH * HEIGHT * 4);
for (let y = 0; y < HEIGHT; y++) {
  for (let x = 0; x < WIDTH; x++) pixels.set(gradient(x, y), (y * WIDTH + x) * 4);
}
console.log(`image ${WIDTH}x${HEIGHT} RGBA, ${pixels.byteLength} bytes`);

// A first small task starts the thread, so the time printed below is the filter's alone.
console.log(`thread byteLength before any result: ${await pool.run('lastSentByteLength')}`);
const started = performance.now();
const grey = await pool.run('grayscale', [pixels], { transfer: [pixels.buffer] });
const ms = performance.now() - started;
console.log(`filtered in ${ms.toFixed(1)} ms`);
// The caller's array was moved to the thread, not copied: its buffer is detached here.
console.log(`caller byteLength after sending: ${pixels.byteLength}`);
// The result was moved back the same way: the thread's copy of the buffer is detached there.
console.log(`thread byteLength after returning: ${await pool.run('lastSentByteLength')}`);
console.log(`result byteLength: ${grey.byteLength}`);

const corners: [number, number][] = [
  [0, 0],
  [WIDTH - 1, 0],
  [0, HEIGHT - 1],
  [WIDTH - 1, HEIGHT - 1],
  [960, 540],
];
let mismatches = 0;
for (const [x, y] of corners) {
  const [r, g, b, a] = gradient(x, y);
  const want = (77 * r + 150 * g + 29 * b) >> 8;
  const at = (y * WIDTH + x) * 4;
  const got = [...grey.subarray(at, at + 4)];
  const ok = got.every((v, i) => v === (i === 3 ? a : want));
  if (!ok) mismatches++;
  console.log(`pixel (${x},${y}) rgba(${r},${g},${b},${a}) -> rgba(${got.join(',')}) ${ok ? 'ok' : 'WRONG'}`);
}
console.log(`pixels checked: ${mismatches === 0 ? 'all ok' : `${mismatches} wrong`}`);

await pool.close();
if (mismatches > 0) process.exitCode = 1;
