/**
 * The copies the image job makes of every image (`imageVariants` in the configuration): their type, the defaults
 * and their validation. Apart from images.ts so that the main thread (configuration, dashboard) reads them without
 * loading sharp.
 * @module
 */
/** Largest bound of a configured copy: WebP's own limit (16,383 pixels a side). */
export const MAX_VARIANT = 16_383;

/** One copy the image job makes of every image: `<name>.<format>`, fitted to the bounds. */
export interface ImageVariant {
  /** Lower-case letters, digits and `-`, from a letter; the output is `<name>.<format>`. */
  name: string;
  /** Bounds in pixels (1..{@link MAX_VARIANT}); at least one. */
  width?: number;
  height?: number;
  /** As sharp's `fit`: `cover` crops to fill the bounds; `inside` and `contain` keep all of it, never enlarged. */
  fit: 'cover' | 'inside' | 'contain';
  format: 'webp' | 'jpeg' | 'png' | 'avif';
  /** 1..100; default 80. */
  quality?: number;
}

/** The image job's copies unless the configuration (`imageVariants`) says otherwise. */
export const DEFAULT_VARIANTS: readonly ImageVariant[] = [
  { name: 'thumbnail', width: 256, height: 256, fit: 'cover', format: 'webp' },
  { name: 'display', width: 1920, height: 1920, fit: 'inside', format: 'webp' },
];

/** A whole number from 1 to `max`. */
export const within = (n: unknown, max: number): boolean =>
  Number.isInteger(n) && (n as number) >= 1 && (n as number) <= max;

/** What is wrong with `variants` (an image job's copies), or undefined when they are fine. */
export function variantsProblem(variants: unknown): string | undefined {
  if (!Array.isArray(variants) || variants.length === 0 || variants.length > 8) {
    return 'must be an array of 1 to 8 { name, width?, height?, fit, format, quality? }';
  }
  const names = new Set<string>();
  for (const [i, v] of variants.entries()) {
    const at = `entry ${i}`;
    if (typeof v !== 'object' || v === null) return `${at} must be an object`;
    const { name, width, height, fit, format, quality, ...rest } = v as Record<string, unknown>;
    const extra = Object.keys(rest)[0];
    if (extra !== undefined) return `${at} has an unknown key "${extra}"`;
    if (typeof name !== 'string' || !/^[a-z][a-z0-9-]{0,39}$/.test(name)) {
      return `${at}: "name" must be lower-case letters, digits and -, from a letter (≤ 40)`;
    }
    if (names.has(name)) return `${at}: "name" ${name} is used twice`;
    names.add(name);
    const bound = (n: unknown) => n === undefined || within(n, MAX_VARIANT);
    if (!bound(width) || !bound(height) || (width === undefined && height === undefined)) {
      return `${at}: "width" and "height" must be whole numbers 1..${MAX_VARIANT}, at least one given`;
    }
    if (!['cover', 'inside', 'contain'].includes(fit as string))
      return `${at}: "fit" must be cover, inside or contain`;
    if (!['webp', 'jpeg', 'png', 'avif'].includes(format as string)) {
      return `${at}: "format" must be webp, jpeg, png or avif`;
    }
    if (quality !== undefined && !within(quality, 100))
      return `${at}: "quality" must be a whole number 1..100`;
  }
  return undefined;
}

/** The file name of a variant's output. */
export const variantFile = (v: Pick<ImageVariant, 'name' | 'format'>): string => `${v.name}.${v.format}`;
