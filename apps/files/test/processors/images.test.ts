import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { libvipsConcurrency } from '../../src/processors/images.ts';
import { pngHeader, processorPool, rejection, TASK_TIMEOUT, tempDir } from './helpers.ts';

const LIMIT = 100_000_000;

describe('processImage in a pool', () => {
  const pool = processorPool();
  let dir = '';
  let cleanup = async () => {};
  let n = 0;

  before(async () => {
    ({ dir, cleanup } = await tempDir('images'));
  });
  after(async () => {
    await pool.close();
    await cleanup();
  });

  /** Writes `data` as an upload and gives the job a fresh output folder. */
  async function job(name: string, data: Buffer, limitInputPixels = LIMIT) {
    const input = join(dir, `${++n}-${name}`);
    await writeFile(input, data);
    const outDir = join(dir, `${n}-out`);
    await import('node:fs/promises').then((fs) => fs.mkdir(outDir));
    return { input, outDir, limitInputPixels };
  }

  function run(input: { input: string; outDir: string; limitInputPixels: number }) {
    return pool.run('processImage', [input], TASK_TIMEOUT);
  }

  it('rotates a JPEG by its EXIF orientation 6: derived files are upright, width and height swapped', async () => {
    // Left half red, right half blue; orientation 6 means "rotate 90° clockwise to view", so red ends on top.
    const left = await sharp({ create: { width: 150, height: 200, channels: 3, background: '#ff0000' } })
      .png()
      .toBuffer();
    const jpeg = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#0000ff' } })
      .composite([{ input: left, left: 0, top: 0 }])
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const result = await run(await job('photo.jpg', jpeg));
    assert.deepEqual(result.metadata, {
      format: 'jpeg',
      width: 300,
      height: 200,
      orientation: 6,
      hasAlpha: false,
      space: 'srgb',
      exif: true,
    });
    const [thumbnail, display] = result.outputs;
    assert.deepEqual(
      { ...thumbnail, path: undefined },
      {
        name: 'thumbnail.webp',
        path: undefined,
        type: 'image/webp',
        width: 256,
        height: 256,
        size: thumbnail?.size,
      },
    );
    assert.equal(display?.name, 'display.webp');
    assert.deepEqual([display?.width, display?.height], [200, 300], 'rotated, and not enlarged to 1920');
    const file = await readFile(display?.path ?? '');
    assert.equal(file.length, display?.size);
    const meta = await sharp(file).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height, meta.orientation], ['webp', 200, 300, undefined]);
    const { data } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
    const top = [data[(10 * 200 + 100) * 3], data[(10 * 200 + 100) * 3 + 2]];
    const bottom = [data[(290 * 200 + 100) * 3], data[(290 * 200 + 100) * 3 + 2]];
    assert.ok(top[0]! > 200 && top[1]! < 60, `top is red, got rgb ${top}`);
    assert.ok(bottom[0]! < 60 && bottom[1]! > 200, `bottom is blue, got rgb ${bottom}`);
  });

  it('keeps alpha from a PNG, and fits a large image inside 1920×1920', async () => {
    const png = await sharp({ create: { width: 2400, height: 1200, channels: 4, background: '#00ff0080' } })
      .png()
      .toBuffer();
    const result = await run(await job('wide.png', png));
    assert.equal(result.metadata.format, 'png');
    assert.equal(result.metadata.hasAlpha, true);
    assert.equal(result.metadata.exif, false);
    const display = result.outputs.find((o) => o.name === 'display.webp');
    assert.deepEqual([display?.width, display?.height], [1920, 960]);
    const meta = await sharp(display?.path ?? '').metadata();
    assert.equal(meta.hasAlpha, true, 'the WebP keeps the alpha channel');
  });

  for (const [format, extension] of [
    ['webp', 'webp'],
    ['gif', 'gif'],
    ['tiff', 'tif'],
    ['avif', 'avif'],
  ] as const) {
    it(`reads ${format} and writes both WebP files`, async () => {
      const input = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#336699' } })
        .toFormat(format)
        .toBuffer();
      const result = await run(await job(`image.${extension}`, input));
      assert.equal(result.metadata.format, format);
      assert.deepEqual([result.metadata.width, result.metadata.height], [320, 240]);
      assert.deepEqual(
        result.outputs.map((o) => [o.name, o.width, o.height]),
        [
          ['thumbnail.webp', 256, 256],
          ['display.webp', 320, 240],
        ],
      );
      for (const output of result.outputs) assert.equal((await sharp(output.path).metadata()).format, 'webp');
    });
  }

  it('makes the configured copies instead: their names, sizes, formats and quality', async () => {
    const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const input = await job('variants.png', png);
    const variants = [
      { name: 'square', width: 64, height: 64, fit: 'cover', format: 'png' },
      { name: 'wide', width: 300, fit: 'inside', format: 'jpeg', quality: 60 },
      { name: 'huge', width: 4000, fit: 'inside', format: 'avif' },
    ] as const;
    const result = await pool.run('processImage', [{ ...input, variants }], TASK_TIMEOUT);
    assert.deepEqual(
      result.outputs.map(({ name, type, width, height }) => ({ name, type, width, height })),
      [
        { name: 'square.png', type: 'image/png', width: 64, height: 64 },
        { name: 'wide.jpeg', type: 'image/jpeg', width: 300, height: 225 },
        // Kept whole and never enlarged past the image itself.
        { name: 'huge.avif', type: 'image/avif', width: 640, height: 480 },
      ],
    );
    assert.deepEqual((await readdir(input.outDir)).sort(), ['huge.avif', 'square.png', 'wide.jpeg']);
    const meta = await sharp(join(input.outDir, 'wide.jpeg')).metadata();
    assert.equal(meta.format, 'jpeg');
  });

  it('refuses copies it cannot make with ERR_WEFT_FILES_INVALID_ARGUMENT', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    const input = await job('bad-variants.png', png);
    for (const [variants, pattern] of [
      [[], /1 to 8/],
      [[{ name: 'x', fit: 'cover', format: 'webp' }], /at least one given/],
      [[{ name: 'x', width: 10, fit: 'fill', format: 'webp' }], /"fit"/],
      [[{ name: 'x', width: 10, fit: 'cover', format: 'gif' }], /"format"/],
      [[{ name: 'X', width: 10, fit: 'cover', format: 'webp' }], /"name"/],
    ] as const) {
      await assert.rejects(
        pool.run('processImage', [{ ...input, variants: variants as never }], TASK_TIMEOUT),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_WEFT_FILES_INVALID_ARGUMENT');
          assert.match(err.message, pattern);
          return true;
        },
      );
    }
  });

  it('re-running a job replaces the outputs and leaves no temp file', async () => {
    const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    const input = await job('again.png', png);
    const first = await run(input);
    const second = await run(input);
    assert.deepEqual(second, first);
    assert.deepEqual((await readdir(input.outDir)).sort(), ['display.webp', 'thumbnail.webp']);
  });

  it('a truncated JPEG fails with ERR_WEFT_FILES_BAD_IMAGE', async () => {
    const noise = Buffer.alloc(400 * 300 * 3);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2_654_435_761) >>> 24;
    const jpeg = await sharp(noise, { raw: { width: 400, height: 300, channels: 3 } })
      .jpeg()
      .toBuffer();
    // Cut in the middle of the scan data: the header is intact, so only decoding finds the damage.
    const input = await job('cut.jpg', jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
    const err = await rejection(run(input));
    assert.equal(err.name, 'ProcessorError');
    assert.equal(err.code, 'ERR_WEFT_FILES_BAD_IMAGE');
    assert.match(err.message, /^not a readable image \(.*JPEG/);
    assert.deepEqual(await readdir(input.outDir), [], 'no output, complete or partial');
    // Cut inside the header: the header read itself fails.
    const header = await rejection(run(await job('stub.jpg', jpeg.subarray(0, 200))));
    assert.equal(header.code, 'ERR_WEFT_FILES_BAD_IMAGE');
  });

  it('text bytes named .jpg fail with ERR_WEFT_FILES_BAD_IMAGE', async () => {
    const err = await rejection(run(await job('forged.jpg', Buffer.from('name,size\nholiday.jpg,12\n'))));
    assert.equal(err.code, 'ERR_WEFT_FILES_BAD_IMAGE');
    assert.match(err.message, /^not a readable image \(.*unsupported image format/);
    // A forged signature gets further, to the decoder, and fails there.
    const magic = await rejection(run(await job('magic.jpg', Buffer.from('GIF89a and then just text\n'))));
    assert.equal(magic.code, 'ERR_WEFT_FILES_BAD_IMAGE');
    assert.match(magic.message, /^not a readable image \(.*gif/);
  });

  it('an SVG, which libvips could render, is refused as an unsupported format', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>');
    const err = await rejection(run(await job('drawing.svg', svg)));
    assert.equal(err.code, 'ERR_WEFT_FILES_BAD_IMAGE');
    assert.match(err.message, /unsupported image format "svg"/);
  });

  it('a 50,000 × 50,000 PNG header fails fast with ERR_WEFT_FILES_PIXEL_LIMIT, nothing decoded', async () => {
    const input = await job('bomb.png', pngHeader(50_000, 50_000));
    const started = performance.now();
    const err = await rejection(run(input));
    const elapsed = performance.now() - started;
    assert.equal(err.code, 'ERR_WEFT_FILES_PIXEL_LIMIT');
    assert.match(err.message, /50000×50000 pixels, over the limit of 100000000/);
    // Decoding 2.5 G pixels would take minutes and 7.5 GB; reading the header takes milliseconds.
    assert.ok(elapsed < 2_000, `rejected in ${elapsed.toFixed(0)} ms`);
    assert.deepEqual(await readdir(input.outDir), []);
  });

  it('a real image over a small limit fails with ERR_WEFT_FILES_PIXEL_LIMIT, naming its size', async () => {
    const png = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    const err = await rejection(run(await job('small.png', png, 50_000)));
    assert.equal(err.code, 'ERR_WEFT_FILES_PIXEL_LIMIT');
    assert.match(err.message, /300×200 pixels, over the limit of 50000/);
  });

  it('a missing input fails with ERR_WEFT_FILES_INPUT_MISSING, a bad job with ERR_WEFT_FILES_INVALID_ARGUMENT', async () => {
    const missing = await rejection(
      run({ input: join(dir, 'nope.jpg'), outDir: dir, limitInputPixels: LIMIT }),
    );
    assert.equal(missing.code, 'ERR_WEFT_FILES_INPUT_MISSING');
    const badLimit = await rejection(run({ input: join(dir, 'nope.jpg'), outDir: dir, limitInputPixels: 0 }));
    assert.equal(badLimit.code, 'ERR_WEFT_FILES_INVALID_ARGUMENT');
    assert.match(badLimit.message, /limitInputPixels/);
  });

  it('a write failure (output folder gone) rejects with the system error and leaves no temp file', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    const input = await job('orphan.png', png);
    const err = await rejection(run({ ...input, outDir: join(input.outDir, 'missing') }));
    assert.equal(err.code, 'ENOENT');
    assert.deepEqual(await readdir(input.outDir), []);
  });
});

describe('libvipsConcurrency', () => {
  it('shares the cores between pool threads and worker processes, at least 1', () => {
    assert.equal(libvipsConcurrency({ WEFT_THREADS: '2', WEFT_WORKERS: '2' }, 8), 2);
    assert.equal(libvipsConcurrency({ WEFT_THREADS: '2' }, 8), 4);
    assert.equal(libvipsConcurrency({ WEFT_THREADS: '3', WEFT_WORKERS: '2' }, 8), 1);
    assert.equal(libvipsConcurrency({ WEFT_THREADS: '16' }, 8), 1);
  });

  it('assumes one pool thread per core when WEFT_THREADS is unset or invalid', () => {
    assert.equal(libvipsConcurrency({}, 8), 1);
    assert.equal(libvipsConcurrency({ WEFT_THREADS: 'two' }, 8), 1);
    assert.equal(libvipsConcurrency({ WEFT_THREADS: '0', WEFT_WORKERS: '-1' }, 8), 1);
    assert.equal(libvipsConcurrency({ WEFT_THREADS: '1', WEFT_WORKERS: 'x' }, 8), 8);
  });
});
