/**
 * The pool task that runs a processor plug-in in a thread: imports its module (once per thread), calls its `run`
 * with the thread's abort signal, and checks what it returns before the main thread stores anything: output names
 * of its own kind, files inside its output folder, a result that is JSON.
 * @module
 */
import { lstat } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import type { TaskContext } from 'weftjs/pool/task';
import type { ProcessorDefinition, ProcessorFile, ProcessorOutput } from './plugin.ts';

/** What the runner sends the thread. */
export interface PluginJobInput {
  kind: string;
  module: string;
  file: ProcessorFile;
  input: string;
  outDir: string;
  options: unknown;
  attempt: number;
  /**
   * Whether its output names must start with its kind (every plug-in's must). The built-in image processor's are
   * its configured copies' names (`thumbnail.webp`), checked against the plug-ins' kinds at start.
   */
  prefixed?: boolean;
}

/** What the thread answers: the outputs with their sizes, and the result. */
export interface PluginJobResult {
  outputs: (ProcessorOutput & { size: number })[];
  result: unknown;
}

const modules = new Map<string, Promise<ProcessorDefinition>>();
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** Longest result a plug-in may return, as JSON text. */
export const MAX_RESULT = 65_536;

function outputError(kind: string, message: string): Error {
  return Object.assign(new Error(`Processor "${kind}" returned ${message}`), {
    code: 'ERR_WEFT_FILES_PROCESSOR_OUTPUT',
  });
}

export async function runPlugin(this: TaskContext, job: PluginJobInput): Promise<PluginJobResult> {
  let loading = modules.get(job.module);
  if (!loading) {
    loading = import(job.module).then((m: { default: ProcessorDefinition }) => m.default);
    modules.set(job.module, loading);
    loading.catch(() => modules.delete(job.module));
  }
  const definition = await loading;
  const answer = await definition.run({
    kind: job.kind,
    file: job.file,
    input: job.input,
    outDir: job.outDir,
    options: (job.options ?? {}) as never,
    signal: this.signal,
    attempt: job.attempt,
  });
  if (answer === null || typeof answer !== 'object')
    throw outputError(job.kind, 'no { outputs, result } object');
  const outputs: PluginJobResult['outputs'] = [];
  const names = new Set<string>();
  for (const o of answer.outputs ?? []) {
    const { name, path, type } = (o ?? {}) as Partial<ProcessorOutput>;
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw outputError(job.kind, `an output name ${JSON.stringify(name)} (letters, digits, . _ -, ≤ 100)`);
    }
    const own = name === job.kind || name.startsWith(`${job.kind}.`) || name.startsWith(`${job.kind}-`);
    if (job.prefixed !== false && !own) {
      throw outputError(
        job.kind,
        `the output ${name}: its name must start with "${job.kind}." or "${job.kind}-"`,
      );
    }
    if (names.has(name)) throw outputError(job.kind, `two outputs named ${name}`);
    names.add(name);
    if (typeof type !== 'string' || !/^[\w.+-]+\/[\w.+-]+$/.test(type)) {
      throw outputError(job.kind, `the output ${name} with a type ${JSON.stringify(type)}`);
    }
    const full = typeof path === 'string' ? resolve(job.outDir, path) : '';
    const within = relative(job.outDir, full);
    const inside = full !== '' && !within.startsWith('..') && !isAbsolute(within);
    const st = inside ? await lstat(full).catch(() => undefined) : undefined;
    if (!st?.isFile()) {
      throw outputError(
        job.kind,
        `the output ${name} at ${JSON.stringify(path)}: not a file inside its outDir`,
      );
    }
    outputs.push({
      name,
      path: full,
      type,
      size: st.size,
      ...(typeof o.width === 'number' ? { width: o.width } : {}),
      ...(typeof o.height === 'number' ? { height: o.height } : {}),
    });
  }
  let result: unknown = null;
  if (answer.result !== undefined) {
    let json: string;
    try {
      json = JSON.stringify(answer.result);
    } catch (err) {
      throw outputError(job.kind, `a result that is not JSON: ${(err as Error).message}`);
    }
    // The result is kept with the job (and sent in events and webhooks): what is bigger belongs in an output.
    if (json.length > MAX_RESULT) {
      throw outputError(
        job.kind,
        `a result of ${json.length} characters (at most ${MAX_RESULT}: write an output)`,
      );
    }
    result = JSON.parse(json);
  }
  return { outputs, result };
}
