#!/usr/bin/env node
/**
 * The file service's client:
 *   weft-files upload <paths…> [--url http://localhost:3000] [--token T] [--concurrency 2] [--wait] [--timeout 10m]
 *                              [--state FILE | --no-resume]
 * Uploads files (folders recursively) with the tus protocol, with one progress bar for all of them (bytes, rate,
 * ETA) on stderr. A lost connection is retried where it stopped; a run that was stopped (Ctrl-C, a crash) and run
 * again resumes each unfinished file where the server has it. With `--wait`, waits for each file's jobs and prints
 * its outcome. Exit 0 when every upload (and with
 * `--wait` every job) succeeded, 1 otherwise, 2 for bad usage.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createToken, listTokens, revokeToken, SCOPES, type Scope } from '../tokens.ts';
import { collectFiles, defaultStateFile, type Outcome, uploadAll } from './upload-client.ts';

const USAGE = `Usage: weft-files upload <file or folder>… [options]
  --url URL          the service (default: $FILES_URL or http://localhost:3000)
  --token TOKEN      bearer token for writes (default: $FILES_TOKEN)
  --concurrency N    files sent at once (default 2)
  --wait             wait for each file's jobs and print their outcome
  --timeout 10m      how long --wait waits (ms, s or m)
  --state FILE       where unfinished uploads are remembered, to resume them (default:
                     $XDG_CACHE_HOME/weft-files/uploads.json, else ~/.cache/weft-files/uploads.json)
  --no-resume        start every file over; remember nothing

Usage: weft-files tokens create --id NAME --scopes read,write[,admin] [--tenant T] [--file F]
       weft-files tokens revoke NAME [--file F]
       weft-files tokens list [--file F]
  Scoped tokens, kept hashed in F (default: $FILES_TOKENS_FILE). create prints the new token once: it is stored
  nowhere. A tenant's tokens see only its files; admin sees every file. The service reads F again when it changes.`;

function duration(text: string): number {
  const m = /^(\d+)\s*(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--timeout must be a duration like 90s or 10m, got "${text}"`);
  return Number(m[1]) * { ms: 1, s: 1_000, m: 60_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm'];
}

class UsageError extends Error {}

function line(o: Outcome): string {
  if (o.error) return `✖ ${o.path}: ${o.error}`;
  const jobs = o.jobs.map((j) => {
    const detail = j.state === 'completed' ? '' : j.error ? ` (${j.error})` : '';
    return `${j.kind} ${j.state}${detail}`;
  });
  return `${o.ok ? '✔' : '✖'} ${o.path} → ${o.id} ${o.type}, ${o.size} bytes${jobs.length ? `; ${jobs.join(', ')}` : ''}`;
}

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        concurrency: { type: 'string' },
        wait: { type: 'boolean' },
        timeout: { type: 'string' },
        state: { type: 'string' },
        'no-resume': { type: 'boolean' },
        id: { type: 'string' },
        tenant: { type: 'string' },
        scopes: { type: 'string' },
        file: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function main(argv: string[]): Promise<number> {
  const parsed = parse(argv);
  const [command, ...paths] = parsed.positionals;
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (command === 'tokens') return tokens(paths, parsed.values);
  if (command !== 'upload') throw new UsageError(command ? `unknown command "${command}"` : 'no command');
  if (paths.length === 0) throw new UsageError('no file or folder to upload');
  const concurrency = Number(parsed.values.concurrency ?? 2);
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new UsageError('--concurrency must be a whole number ≥ 1');
  const base = parsed.values.url ?? process.env.FILES_URL ?? 'http://localhost:3000';
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new UsageError(`--url is not a URL: "${base}"`);
  }
  // `npm run upload -- photo.jpg` runs in the package's folder; INIT_CWD is where the user typed it.
  const here = process.env.INIT_CWD ?? process.cwd();
  const files = await collectFiles(paths.map((p) => resolve(here, p)));
  if (files.length === 0) throw new UsageError('no files found under the given paths');
  const token = parsed.values.token ?? process.env.FILES_TOKEN;
  if (parsed.values['no-resume'] && parsed.values.state)
    throw new UsageError('--state and --no-resume cannot be used together');
  const stateFile = parsed.values['no-resume']
    ? undefined
    : resolve(here, parsed.values.state ?? defaultStateFile());
  const outcomes = await uploadAll(files, {
    ...(stateFile ? { stateFile } : {}),
    onResume: (file, offset) =>
      process.stderr.write(`resuming ${file.path} at ${offset} of ${file.size} bytes\n`),
    url,
    concurrency,
    wait: parsed.values.wait === true,
    timeoutMs: duration(parsed.values.timeout ?? '10m'),
    ...(token ? { token } : {}),
  });
  for (const o of outcomes) process.stdout.write(`${line(o)}\n`);
  const failed = outcomes.filter((o) => !o.ok).length;
  process.stdout.write(`${outcomes.length - failed} of ${outcomes.length} files ok\n`);
  return failed === 0 ? 0 : 1;
}

/** `weft-files tokens create|revoke|list`. */
async function tokens(
  args: string[],
  values: { id?: string; tenant?: string; scopes?: string; file?: string },
): Promise<number> {
  const [action, name] = args;
  const here = process.env.INIT_CWD ?? process.cwd();
  const given = values.file ?? process.env.FILES_TOKENS_FILE;
  if (!given) throw new UsageError('tokens: name the file with --file or FILES_TOKENS_FILE');
  const file = resolve(here, given);
  if (action === 'create') {
    if (!values.id) throw new UsageError('tokens create: --id NAME is required');
    const scopes = (values.scopes ?? '').split(',').filter(Boolean);
    if (scopes.length === 0 || !scopes.every((x): x is Scope => (SCOPES as string[]).includes(x)))
      throw new UsageError(`tokens create: --scopes must list some of ${SCOPES.join(', ')}`);
    const token = await createToken(file, { id: values.id, tenant: values.tenant ?? null, scopes });
    process.stderr.write(`token "${values.id}" added to ${file}; it is shown once, here:\n`);
    process.stdout.write(`${token}\n`);
    return 0;
  }
  if (action === 'revoke') {
    if (!name) throw new UsageError('tokens revoke: which token (its id)?');
    if (!(await revokeToken(file, name))) {
      process.stderr.write(`weft-files: no token "${name}" in ${file}\n`);
      return 1;
    }
    process.stdout.write(`revoked "${name}"\n`);
    return 0;
  }
  if (action === 'list') {
    for (const t of await listTokens(file)) {
      const state = t.revokedAt ? `revoked ${t.revokedAt}` : 'active';
      process.stdout.write(`${t.id}\ttenant=${t.tenant ?? '-'}\tscopes=${t.scopes.join(',')}\t${state}\n`);
    }
    return 0;
  }
  throw new UsageError(`tokens: unknown action "${action ?? ''}" (create, revoke, list)`);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const usage = err instanceof UsageError;
    process.stderr.write(
      `weft-files: ${(err as Error).message ?? String(err)}\n${usage ? `${USAGE}\n` : ''}`,
    );
    process.exitCode = usage ? 2 : 1;
  },
);
