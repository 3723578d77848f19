/**
 * The processor plug-ins of the configuration, as the main thread sees them: their entries validated at start
 * ({@link parseProcessors}), their modules imported once to check that each exports a processor and to read its
 * `match` ({@link ProcessorRegistry.load}), and the kinds of jobs an upload of a given type gets.
 *
 * @example
 * ```ts
 * const registry = await ProcessorRegistry.load(config);
 * registry.kindsFor('application/zip'); // ['image'?, ..., 'zip-manifest']
 * ```
 * @module
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FilesError } from '../errors.ts';
import { BUILT_IN_DEFAULTS, BUILT_IN_PROCESSORS, type BuiltInSettings } from './builtin.ts';
import { isTypeList, PROCESSOR, type ProcessorDefinition, typeMatches } from './plugin.ts';

/**
 * One entry of `processors` in the configuration: a plug-in (with `module`), or a built-in processor (`image`,
 * `csv`) given only its place in a chain (`after`).
 */
export interface ProcessorConfig {
  /** Its jobs' kind and its outputs' prefix: lower-case letters, digits and `-`, from a letter; at most 40. */
  kind: string;
  /** The module's file URL (the configured path, resolved against the config file's folder); none for a built-in. */
  module?: string;
  /**
   * The kind whose job must complete on the same file before this one's is queued (when both apply to the file);
   * that job dead stops the chain there.
   */
  after?: string;
  /** The sniffed types it runs on; default: the module's own `match`. */
  match?: readonly string[];
  /** Longest one attempt may take, in ms. Default: `jobTimeoutMs`. */
  timeoutMs?: number;
  /** Tries before its job is dead-lettered. Default: `maxAttempts`. */
  maxAttempts?: number;
  /** Most of its jobs one process runs at once (within the service's `concurrency`). Default: no limit of its own. */
  concurrency?: number;
  /** Passed to its `run` as `options` (JSON). Default `{}`. */
  options?: unknown;
}

/** Kinds the service itself uses: no plug-in may take them. */
export const BUILT_IN_KINDS: readonly string[] = ['image', 'csv', 'webhook'];
/** Built-in processors an entry may configure: timeout, attempts, concurrency, place in a chain. */
const CHAINABLE = ['image', 'csv'];

const KIND = /^[a-z][a-z0-9-]{0,39}$/;
const KEYS = new Set([
  'kind',
  'module',
  'match',
  'timeout',
  'maxAttempts',
  'concurrency',
  'options',
  'after',
]);
const TIME_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

function bad(source: string, what: string, value: unknown): FilesError {
  return new FilesError(
    'ERR_WEFT_FILES_CONFIG',
    `Setting "processors" (${source}): ${what}; got ${JSON.stringify(value)}`,
  );
}

/** A duration in ms: a number of ms, or `30s`, `500ms`, `2m`, `1h`. */
function duration(raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isSafeInteger(raw) && raw >= 1 ? raw : undefined;
  if (typeof raw !== 'string') return undefined;
  const m = /^(\d+)(ms|s|m|h)?$/.exec(raw.trim());
  const v = m ? Number(m[1]) * TIME_UNITS[m[2] ?? 'ms']! : Number.NaN;
  return Number.isSafeInteger(v) && v >= 1 ? v : undefined;
}

/**
 * Validates the `processors` entries: a known key set, a free `kind`, a module path, MIME patterns, a duration and
 * a count. Module paths are resolved against `base` (the config file's folder). Nothing is imported here.
 */
export function parseProcessors(raw: unknown, source: string, base: string): ProcessorConfig[] {
  if (!Array.isArray(raw)) throw bad(source, 'must be an array of { kind, module, ... }', raw);
  const seen = new Set<string>();
  const entries = raw.map((entry: unknown, i): ProcessorConfig => {
    const at = `entry ${i}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw bad(source, `${at} must be an object`, entry);
    }
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) {
      if (!KEYS.has(key))
        throw bad(source, `${at} has an unknown key "${key}" (known: ${[...KEYS].join(', ')})`, e);
    }
    const { kind, module, match, timeout, maxAttempts, concurrency, options, after } = e;
    if (typeof kind !== 'string' || !KIND.test(kind)) {
      throw bad(source, `${at}: "kind" must be lower-case letters, digits and -, from a letter (≤ 40)`, kind);
    }
    if (seen.has(kind)) throw bad(source, `${at}: "kind" ${kind} is configured twice`, kind);
    seen.add(kind);
    if (after !== undefined && (typeof after !== 'string' || !KIND.test(after))) {
      throw bad(source, `${at}: "after" must be the kind of another processor`, after);
    }
    const timeoutMs = timeout === undefined ? undefined : duration(timeout);
    if (timeout !== undefined && timeoutMs === undefined) {
      throw bad(source, `${at}: "timeout" must be a duration like 30s or a number of ms ≥ 1`, timeout);
    }
    if (maxAttempts !== undefined && !(Number.isSafeInteger(maxAttempts) && (maxAttempts as number) >= 1)) {
      throw bad(source, `${at}: "maxAttempts" must be a whole number ≥ 1`, maxAttempts);
    }
    if (concurrency !== undefined && !(Number.isSafeInteger(concurrency) && (concurrency as number) >= 1)) {
      throw bad(source, `${at}: "concurrency" must be a whole number ≥ 1`, concurrency);
    }
    const settings = {
      ...(timeoutMs ? { timeoutMs } : {}),
      ...(maxAttempts ? { maxAttempts: maxAttempts as number } : {}),
      ...(concurrency ? { concurrency: concurrency as number } : {}),
      ...(after ? { after: after as string } : {}),
    };
    if (CHAINABLE.includes(kind)) {
      // A built-in processor: its module and what it matches are the service's; its job settings are configured.
      const own = Object.keys(e).find((k) => k === 'module' || k === 'match' || k === 'options');
      if (own !== undefined || Object.keys(settings).length === 0) {
        throw bad(
          source,
          `${at}: the built-in ${kind} takes only "timeout", "maxAttempts", "concurrency" and "after" here`,
          e,
        );
      }
      return { kind, ...settings };
    }
    if (BUILT_IN_KINDS.includes(kind)) throw bad(source, `${at}: "kind" ${kind} is the service's own`, kind);
    if (typeof module !== 'string' || module === '') {
      throw bad(source, `${at}: "module" must be the path of the processor's module`, module);
    }
    if (!module.startsWith('.') && !isAbsolute(module)) {
      throw bad(
        source,
        `${at}: "module" must be a path (./my-processor.js), relative to the config file`,
        module,
      );
    }
    if (match !== undefined && !(isTypeList(match) && match.length > 0)) {
      throw bad(
        source,
        `${at}: "match" must be a non-empty array of MIME types (image/png, image/*, */*)`,
        match,
      );
    }
    if (options !== undefined && (typeof options !== 'object' || options === null)) {
      throw bad(source, `${at}: "options" must be a JSON object`, options);
    }
    return {
      kind,
      module: pathToFileURL(resolve(base, module)).href,
      ...(match ? { match: match as string[] } : {}),
      ...(options ? { options } : {}),
      ...settings,
    };
  });
  // Chains: each `after` names a processor there is, and following them never comes back to where it started.
  const afterOf = new Map(entries.filter((e) => e.after).map((e) => [e.kind, e.after!]));
  for (const [kind, after] of afterOf) {
    if (!seen.has(after) && !CHAINABLE.includes(after)) {
      throw bad(source, `"${kind}" runs after "${after}", which is neither configured nor built in`, after);
    }
    const path = [kind];
    for (let k: string | undefined = after; k !== undefined; k = afterOf.get(k)) {
      if (path.includes(k)) throw bad(source, `a chain that loops: ${[...path, k].join(' → ')}`, after);
      path.push(k);
    }
  }
  return entries;
}

const isPlugin = (p: ProcessorConfig): p is ProcessorConfig & { module: string } => p.module !== undefined;

/** A loaded processor (a configured plug-in or a built-in): its configuration and the types it runs on. */
export interface LoadedProcessor extends ProcessorConfig {
  module: string;
  /** The image and CSV processors: their jobs' results keep their own shape (see {@link jobResult}). */
  builtIn: boolean;
  matches(type: string): boolean;
  /** Error codes its module calls permanent. */
  permanent: readonly string[];
  /** The `options` its `run` gets: the configured ones; a built-in's are made of the service's settings. */
  optionsFor(service: { csvDatabase: string }): unknown;
}

/** The service's settings the built-in processors read; what is not given is config.ts's default. */
export type BuiltInConfig = Partial<Omit<BuiltInSettings, 'csvDatabase'>>;

/**
 * A processor job's result, as kept with the job: `{ outputs: [names], result }` for a plug-in; a built-in's own
 * result with its `outputs` beside it (the image job's `{ metadata, outputs }`, the CSV job's table and counts).
 */
export function jobResult(
  processor: Pick<LoadedProcessor, 'builtIn'>,
  outputs: string[],
  result: unknown,
): unknown {
  if (!processor.builtIn) return { outputs, result };
  return { ...(result as object), outputs };
}

/**
 * The image copies are named for themselves, a plug-in's outputs for its kind: the two must not meet. Undefined when
 * they do not; else the name they share and what the copies' names must be (for `ERR_WEFT_FILES_CONFIG`). `loadConfig` and
 * {@link ProcessorRegistry.load} both ask, so a configuration made by hand for `createService` is checked too.
 */
export function variantClash(
  imageVariants: readonly { name: string }[],
  processors: readonly ProcessorConfig[],
): { name: string; problem: string } | undefined {
  const kinds = new Set(processors.filter(isPlugin).map((p) => p.kind));
  const taken = imageVariants.find((v) => kinds.has(v.name));
  if (!taken) return undefined;
  const { name } = taken;
  return {
    name,
    problem: `names other than the processors' kinds (the image copy "${name}" and the processor "${name}" would both name outputs ${name}.*)`,
  };
}

/** The processors of this process, loaded: the built-ins, then the configured plug-ins. */
export class ProcessorRegistry {
  readonly #byKind: Map<string, LoadedProcessor>;
  /** Every configured entry, the built-ins' included: their job settings and places in chains. */
  readonly #settings: ReadonlyMap<string, ProcessorConfig>;

  /** The processors with a concurrency of their own: kind → most of its jobs one process runs at once. */
  readonly #limits = new Map<string, number>();
  /** Kinds some other processor runs after. */
  readonly #leading = new Set<string>();

  private constructor(processors: LoadedProcessor[], settings: ReadonlyMap<string, ProcessorConfig>) {
    this.#byKind = new Map(processors.map((p) => [p.kind, p]));
    this.#settings = settings;
    for (const p of settings.values()) {
      if (p.concurrency !== undefined) this.#limits.set(p.kind, p.concurrency);
      if (p.after !== undefined) this.#leading.add(p.after);
    }
  }

  /**
   * Imports each configured module once (in the main thread: its jobs run in the pool's threads) and checks that
   * its default export comes from `defineProcessor`, with a `match` where the configuration gives none. A module
   * that cannot be loaded stops the start with `ERR_WEFT_FILES_CONFIG` naming it.
   */
  static async load(
    config: { processors: readonly ProcessorConfig[] } & BuiltInConfig,
  ): Promise<ProcessorRegistry> {
    const clash = variantClash(config.imageVariants ?? BUILT_IN_DEFAULTS.imageVariants, config.processors);
    if (clash) throw new FilesError('ERR_WEFT_FILES_CONFIG', `imageVariants must have ${clash.problem}`);
    const settings = new Map(config.processors.map((p) => [p.kind, p]));
    const loaded = await Promise.all(
      config.processors.filter(isPlugin).map(async (p): Promise<LoadedProcessor> => {
        let definition: ProcessorDefinition | undefined;
        try {
          definition = ((await import(p.module)) as { default?: ProcessorDefinition }).default;
        } catch (err) {
          throw new FilesError(
            'ERR_WEFT_FILES_CONFIG',
            `Processor "${p.kind}": cannot load ${p.module}: ${(err as Error).message}`,
            { cause: err },
          );
        }
        if (!definition || !(definition as unknown as Record<symbol, unknown>)[PROCESSOR]) {
          throw new FilesError(
            'ERR_WEFT_FILES_CONFIG',
            `Processor "${p.kind}": ${p.module} must export default defineProcessor({ ... }) from weftjs-files/processor`,
          );
        }
        const own = definition.match;
        let matches: (type: string) => boolean;
        if (p.match) {
          const patterns = p.match;
          matches = (type) => typeMatches(patterns, type);
        } else if (typeof own === 'function') {
          matches = (type) => own(type) === true;
        } else if (own) {
          matches = (type) => typeMatches(own, type);
        } else {
          throw new FilesError(
            'ERR_WEFT_FILES_CONFIG',
            `Processor "${p.kind}": neither its configuration nor ${p.module} says which types it runs on ("match")`,
          );
        }
        const options = p.options ?? {};
        return {
          ...p,
          builtIn: false,
          matches,
          permanent: definition.permanent ?? [],
          optionsFor: () => options,
        };
      }),
    );
    return new ProcessorRegistry([...builtIns(config), ...loaded], settings);
  }

  /** The built-in processors alone, with the settings given (else the defaults): no configured plug-in. */
  static builtIn(config: BuiltInConfig = {}): ProcessorRegistry {
    return new ProcessorRegistry(builtIns(config), new Map());
  }

  /** The kind `kind` runs after, if it is in a chain. */
  after(kind: string): string | undefined {
    return this.#settings.get(kind)?.after;
  }

  /** Of the kinds a file gets, those queued at its upload: the ones that run after none of the others. */
  startKinds<K extends string>(kinds: readonly K[]): K[] {
    return kinds.filter((k) => {
      const after = this.after(k);
      return after === undefined || !kinds.includes(after as K);
    });
  }

  /** Whether some processor runs after `kind` (else its completion queues nothing). */
  leads(kind: string): boolean {
    return this.#leading.has(kind);
  }

  /** Of the kinds a file gets, those queued when its job of `kind` completes. */
  followers<K extends string>(kind: string, kinds: readonly K[]): K[] {
    return kinds.filter((k) => k !== kind && this.after(k) === kind);
  }

  get(kind: string): LoadedProcessor | undefined {
    return this.#byKind.get(kind);
  }

  /** The kinds an upload of sniffed `type` gets: the built-in one, then the plug-ins', in configuration order. */
  kindsFor(type: string): string[] {
    const kinds: string[] = [];
    for (const p of this.#byKind.values()) {
      try {
        if (p.matches(type)) kinds.push(p.kind);
      } catch {
        // A predicate that throws matches nothing (it runs on the upload's path; it must not fail uploads).
      }
    }
    return kinds;
  }

  /** The processors with a concurrency of their own: kind → most of its jobs one process runs at once. */
  limits(): ReadonlyMap<string, number> {
    return this.#limits;
  }

  /** Its `maxAttempts`, when the processor of `kind` (a plug-in or a built-in) has one of its own. */
  attempts(kind: string): number | undefined {
    return this.#settings.get(kind)?.maxAttempts;
  }

  /** Its timeout in ms, when the processor of `kind` has one of its own. */
  timeout(kind: string): number | undefined {
    return this.#settings.get(kind)?.timeoutMs;
  }
}

/** The built-in processors as loaded ones, their options made of `config` (else the defaults) when a job runs. */
function builtIns(config: BuiltInConfig): LoadedProcessor[] {
  const settings = {
    imageVariants: config.imageVariants ?? BUILT_IN_DEFAULTS.imageVariants,
    limitInputPixels: config.limitInputPixels ?? BUILT_IN_DEFAULTS.limitInputPixels,
    csvMaxBadRows: config.csvMaxBadRows ?? BUILT_IN_DEFAULTS.csvMaxBadRows,
  };
  return BUILT_IN_PROCESSORS.map((b) => ({
    kind: b.kind,
    module: b.module,
    builtIn: true,
    match: b.match,
    matches: (type: string) => b.match.includes(type),
    permanent: b.permanent,
    optionsFor: (service: { csvDatabase: string }) => b.options({ ...settings, ...service }),
  }));
}
