/**
 * The built-in image processor, a plug-in registered by default: the copies of `imageVariants` (a WebP thumbnail and
 * display copy unless configured), and the input's metadata as its result. Its module is imported in the pool's
 * threads only (it loads sharp): the types it runs on and its permanent errors are in builtin.ts.
 * @module
 */
import type { ImageProcessorOptions } from './builtin.ts';
import { type ImageMetadata, processImage } from './images.ts';
import { defineProcessor } from './plugin.ts';

export default defineProcessor<ImageProcessorOptions, { metadata: ImageMetadata }>({
  async run({ input, outDir, options }) {
    const { metadata, outputs } = await processImage({
      input,
      outDir,
      limitInputPixels: options.limitInputPixels,
      variants: options.variants,
    });
    return {
      outputs: outputs.map(({ name, path, type, width, height }) => ({ name, path, type, width, height })),
      result: { metadata },
    };
  },
});
