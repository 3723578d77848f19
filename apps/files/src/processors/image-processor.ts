/**
 * The built-in image processor, a plug-in registered by default for the types of {@link IMAGE_TYPES}: the copies
 * of `imageVariants` (a WebP thumbnail and display copy unless configured), and the input's metadata as its result.
 * Its module is imported in the pool's threads only (it loads sharp).
 * @module
 */
import { IMAGE_PERMANENT, IMAGE_TYPES, type ImageProcessorOptions } from './builtin.ts';
import { type ImageMetadata, processImage } from './images.ts';
import { defineProcessor } from './plugin.ts';

export default defineProcessor<ImageProcessorOptions, { metadata: ImageMetadata }>({
  match: [...IMAGE_TYPES],
  permanent: IMAGE_PERMANENT,
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
