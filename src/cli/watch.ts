/**
 * `weft start --watch`, for development: a change to a watched file rolls the workers over to the new code (the
 * rolling reload of `weft reload`, debounced), and a version that fails to start leaves the old workers serving
 * until the next change fixes it. Internal.
 */
import { type FSWatcher, watch } from 'node:fs';
import { relative, sep } from 'node:path';
import type { Logger } from '../lifecycle/index.ts';

export interface WatchOptions {
  /** Folders (watched recursively) or files. Default: the application script's folder. */
  paths: string[];
  /**
   * What changes are ignored: a name matches any path segment (`node_modules`), `*.ext` matches a file's end.
   * Default: `node_modules`, `.git`, `dist`, `data`, `coverage`, `*.log`, `*.db`, `*.db-wal`, `*.db-shm`, `*.sock`.
   */
  ignore: string[];
  /** Quiet time after the last change before the reload, ms. Default 300. */
  debounceMs: number;
}

export const DEFAULT_IGNORE = [
  'node_modules',
  '.git',
  'dist',
  'data',
  'coverage',
  '*.log',
  '*.db',
  '*.db-wal',
  '*.db-shm',
  '*.db-journal',
  '*.sock',
];

/** Whether `path` (relative to a watched root) is ignored by `patterns`. */
export function ignored(path: string, patterns: readonly string[]): boolean {
  const segments = path.split(/[\\/]/);
  const name = segments.at(-1) ?? '';
  return patterns.some((p) =>
    p.startsWith('*.') ? name.endsWith(p.slice(1)) : segments.includes(p.replace(/[\\/]+$/, '')),
  );
}

/** What the watcher needs of the supervisor. */
export interface Reloadable {
  reload(): Promise<{ ok: boolean; replaced: number; reason?: string }>;
}

/**
 * Watches `options.paths` and reloads `target` after each burst of changes; one reload at a time, and a change
 * during a reload gets one more after it. Returns a function that stops watching.
 *
 * @example
 * ```ts
 * const stop = watchAndReload(supervisor, { paths: ['src'], ignore: DEFAULT_IGNORE, debounceMs: 300 }, logger);
 * ```
 */
export function watchAndReload(target: Reloadable, options: WatchOptions, log: Logger): () => void {
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let changed = new Set<string>();
  let running: Promise<void> | undefined;
  let again = false;

  const reload = async (): Promise<void> => {
    const files = [...changed];
    changed = new Set();
    const what = files.length === 1 ? files[0] : `${files.length} files`;
    log.info({ files }, `${what} changed: reloading`);
    const result = await target.reload();
    if (result.ok)
      log.info({ replaced: result.replaced }, `reloaded: ${result.replaced} workers on the new code`);
    else
      log.warn(
        { reason: result.reason },
        `the new code did not start (${result.reason ?? 'unknown'}): the previous workers keep serving until the next change`,
      );
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (running) {
        again = true;
        return;
      }
      running = reload()
        .catch((err: unknown) => log.error({ err }, 'reloading after a change failed'))
        .finally(() => {
          running = undefined;
          if (again) {
            again = false;
            schedule();
          }
        });
    }, options.debounceMs);
  };

  for (const root of options.paths) {
    const watcher = watch(root, { recursive: true }, (_event, file) => {
      const rel = file ? String(file) : '';
      if (rel && ignored(rel, options.ignore)) return;
      changed.add(rel ? relative(process.cwd(), `${root}${sep}${rel}`) || rel : root);
      schedule();
    });
    watcher.on('error', (err) => log.warn({ err, path: root }, `watching ${root} failed`));
    watchers.push(watcher);
  }
  log.info(
    { paths: options.paths, ignore: options.ignore },
    `watching ${options.paths.join(', ')} for changes (ignoring ${options.ignore.join(', ')})`,
  );
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
