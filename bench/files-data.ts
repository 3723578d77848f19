/**
 * The inputs of the `files` benchmark, generated into a temp directory: opaque binary files, JPEG photos-alike with
 * varied content (gradients, texture and noise, so encoding is real work), and a large CSV. Deterministic: the same
 * seeds give the same bytes on every run.
 */
import { randomFillSync } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

/** A generated file. */
export interface Input {
  path: string;
  size: number;
}

/** xorshift32: fast, seeded, good enough for pixels and rows. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/**
 * `count` files of `size` random bytes. The first 16 bytes are a fixed text header, so no file can start with a
 * format's magic number by chance: the service must store every one as `application/octet-stream`, without a job.
 */
export async function makeBlobs(dir: string, count: number, size: number): Promise<Input[]> {
  const header = Buffer.from('WEFT-BENCH-BLOB\n');
  const chunk = Buffer.alloc(8 * 1024 * 1024);
  const inputs: Input[] = [];
  for (let i = 0; i < count; i++) {
    const path = join(dir, `blob-${i}.bin`);
    const fh = await open(path, 'w');
    try {
      for (let written = 0; written < size; ) {
        const n = Math.min(chunk.length, size - written);
        randomFillSync(chunk, 0, n);
        if (written === 0) header.copy(chunk);
        await fh.write(chunk, 0, n);
        written += n;
      }
    } finally {
      await fh.close();
    }
    inputs.push({ path, size });
  }
  return inputs;
}

/** Raw RGB pixels: two colour gradients, a texture whose scale depends on `seed`, and noise of varying strength. */
function pixels(width: number, height: number, seed: number): Buffer {
  const next = rng(seed * 2654435761 + 1);
  const raw = Buffer.allocUnsafe(width * height * 3);
  // Stores into a clamped view saturate at 0 and 255 instead of wrapping around.
  const px = new Uint8ClampedArray(raw.buffer, raw.byteOffset, raw.length);
  const period = 40 + (seed % 7) * 35;
  const noise = (6 + (seed % 5) * 8) / 128;
  const texX = Float32Array.from({ length: width }, (_, x) => 40 * Math.sin((x * 2 * Math.PI) / period));
  const c0 = [next() % 256, next() % 256, next() % 256];
  const c1 = [next() % 256, next() % 256, next() % 256];
  // The gradient c0 → c1 along the diagonal is linear, so it splits into a column term and a row term.
  const column = new Float32Array(width * 3);
  for (let x = 0; x < width; x++) {
    for (let c = 0; c < 3; c++) column[x * 3 + c] = c0[c]! + ((c1[c]! - c0[c]!) * x) / width / 2;
  }
  let o = 0;
  for (let y = 0; y < height; y++) {
    const ty = Math.cos((y * 2 * Math.PI) / (period * 1.7));
    const r0 = ((c1[0]! - c0[0]!) * y) / height / 2;
    const r1 = ((c1[1]! - c0[1]!) * y) / height / 2;
    const r2 = ((c1[2]! - c0[2]!) * y) / height / 2;
    for (let x = 0; x < width; x++) {
      const t = texX[x]! * ty;
      const n = next();
      const i = x * 3;
      px[o++] = column[i]! + r0 + t + ((n & 0xff) - 128) * noise;
      px[o++] = column[i + 1]! + r1 + t + (((n >>> 8) & 0xff) - 128) * noise;
      px[o++] = column[i + 2]! + r2 + t + (((n >>> 16) & 0xff) - 128) * noise;
    }
  }
  return raw;
}

/** One JPEG (quality 90, like a camera's), with EXIF orientation 6 (shot rotated) when `rotated`. */
export async function makeJpeg(path: string, width: number, height: number, seed: number, rotated = false) {
  let image = sharp(pixels(width, height, seed), { raw: { width, height, channels: 3 } });
  if (rotated) image = image.withMetadata({ orientation: 6 });
  const data = await image.jpeg({ quality: 90 }).toBuffer();
  await writeFile(path, data);
  return { path, size: data.length };
}

/** `count` JPEGs of `width`×`height`, every fourth one with EXIF orientation 6. */
export async function makeJpegs(dir: string, count: number, width: number, height: number): Promise<Input[]> {
  const inputs: Input[] = [];
  for (let i = 0; i < count; i++) {
    inputs.push(await makeJpeg(join(dir, `photo-${i}.jpg`), width, height, i + 1, i % 4 === 3));
  }
  return inputs;
}

const CITIES = ['Lisbon', 'Porto', 'Berlin', 'Oslo', 'Kyoto', 'Lima', 'Quito', 'Accra', 'Perth', 'Tunis'];
const NAMES = ['Ana', 'Bruno', 'Chen', 'Dana', 'Emeka', 'Fatima', 'Goran', 'Hana', 'Ivan', 'Jonas', 'Keiko'];

/** Timestamps through 2024, precomputed: formatting a date per row would dominate the generation time. */
const DAYS = Array.from({ length: 4096 }, (_, i) =>
  new Date(Date.UTC(2024, 0, 1) + i * 7_700_000).toISOString().slice(0, 19),
);

/** A CSV of `rows` data rows and 6 columns (id, name, email, city, amount, created_at), about 60 bytes a row. */
export async function makeCsv(path: string, rows: number): Promise<Input> {
  const next = rng(42);
  const fh = await open(path, 'w');
  let size = 0;
  const flush = async (text: string) => {
    const bytes = Buffer.from(text);
    size += bytes.length;
    await fh.write(bytes);
  };
  try {
    let text = 'id,name,email,city,amount,created_at\n';
    for (let i = 1; i <= rows; i++) {
      const name = NAMES[next() % NAMES.length]!;
      const day = DAYS[next() % DAYS.length]!;
      text += `${i},${name},${name.toLowerCase()}${i}@example.com,${CITIES[next() % CITIES.length]},${(next() % 100_000) / 100},${day}\n`;
      if (text.length > 1_000_000) {
        await flush(text);
        text = '';
      }
    }
    await flush(text);
  } finally {
    await fh.close();
  }
  return { path, size };
}
