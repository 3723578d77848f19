/**
 * The built-in processors, as the main thread registers them: plug-ins like any other (their modules are
 * `image-processor.ts` and `csv-processor.ts`, run by the pool's `runPlugin` task), registered by default, whose
 * types and permanent errors are known here, and only here, so that the main thread never imports their modules
 * (the image one loads sharp, about 25 MB of RSS); the modules declare neither.
 *
 * @example
 * ```ts
 * import { BUILT_IN_PROCESSORS } from './processors/builtin.ts';
 * BUILT_IN_PROCESSORS.find((p) => p.kind === 'image')!.match; // ['image/jpeg', 'image/png', ...]
 * ```
 * @module
 */
import { DEFAULT_VARIANTS, type ImageVariant } from './variants.ts';

/** Formats processed as images (sharp reads all of them). */
export const IMAGE_TYPES: ReadonlySet<string> = new Set([
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/avif',
  'image/gif',
  'image/tiff',
]);

/** What the built-ins' options are made of: the service's settings, and where the CSV tables go. */
export interface BuiltInSettings {
  imageVariants: readonly ImageVariant[];
  limitInputPixels: number;
  csvMaxBadRows: number;
  /** The catalog's database (SQLite file or PostgreSQL URL), where a CSV job makes its table. */
  csvDatabase: string;
}

/** The settings the built-ins use unless the configuration says otherwise (config.ts's defaults). */
export const BUILT_IN_DEFAULTS: Readonly<Omit<BuiltInSettings, 'csvDatabase'>> = {
  imageVariants: DEFAULT_VARIANTS,
  limitInputPixels: 100_000_000,
  csvMaxBadRows: 1_000,
};

/** `options` of the image processor. */
export interface ImageProcessorOptions {
  limitInputPixels: number;
  variants: readonly ImageVariant[];
}

/** `options` of the CSV processor. */
export interface CsvProcessorOptions {
  database: string;
  maxBadRows: number;
}

/** A built-in processor: a plug-in whose module, types and options are the service's own. */
export interface BuiltInProcessor {
  kind: 'image' | 'csv';
  /** Its module's file URL, for the pool's `runPlugin`. */
  module: string;
  match: readonly string[];
  /** Error codes no retry mends. */
  permanent: readonly string[];
  options(settings: BuiltInSettings): ImageProcessorOptions | CsvProcessorOptions;
}

// Compiled to `dist/`, these modules are `.js`.
const moduleUrl = (name: string): string =>
  new URL(import.meta.url.endsWith('.ts') ? `./${name}.ts` : `./${name}.js`, import.meta.url).href;

/** The built-ins, in the order a file's kinds list them (before the configured plug-ins). */
export const BUILT_IN_PROCESSORS: readonly BuiltInProcessor[] = [
  {
    kind: 'image',
    module: moduleUrl('image-processor'),
    match: [...IMAGE_TYPES],
    // Not an image sharp reads, or over the pixel limit.
    permanent: ['ERR_WEFT_FILES_BAD_IMAGE', 'ERR_WEFT_FILES_PIXEL_LIMIT'],
    options: (s) => ({ limitInputPixels: s.limitInputPixels, variants: s.imageVariants }),
  },
  {
    kind: 'csv',
    module: moduleUrl('csv-processor'),
    match: ['text/csv'],
    // A file no retry will load.
    permanent: [
      'ERR_WEFT_FILES_CSV_EMPTY',
      'ERR_WEFT_FILES_CSV_TOO_MANY_BAD_ROWS',
      'ERR_WEFT_FILES_CSV_TOO_MANY_COLUMNS',
      'ERR_WEFT_FILES_CSV_MALFORMED',
      'ERR_WEFT_FILES_CSV_INCONSISTENT',
      'ERR_WEFT_FILES_CSV_ENCODING',
    ],
    options: (s) => ({ database: s.csvDatabase, maxBadRows: s.csvMaxBadRows }),
  },
];
