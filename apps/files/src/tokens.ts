/**
 * Scoped tokens: who may do what, and for which tenant. Internal to the file service; see docs/files.md, "Tokens and
 * tenants".
 *
 * The tokens live in a JSON file (`FILES_TOKENS_FILE`), stored hashed: a token is 32 random bytes, so one SHA-256 of
 * it is what GitHub and others keep too (no password stretching is needed for a secret nobody chose). The file is
 * read again when it changes (checked at most once a second), so a revoked token stops working on every worker, and
 * on every node that shares the file, within about a second, without a restart. `weftjs-files tokens` writes it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { FilesError } from './errors.ts';

/** What a token allows: `read` (GET), `write` (upload, delete, retry), `admin` (every tenant, the dashboard, jobs). */
export type Scope = 'read' | 'write' | 'admin';
export const SCOPES: readonly Scope[] = ['read', 'write', 'admin'];

/** One token as the file keeps it. */
export interface TokenEntry {
  /** A name for it, unique in the file: what `tokens revoke` takes and logs show. */
  id: string;
  /** Hex SHA-256 of the token. */
  sha256: string;
  /** The tenant its uploads belong to and its reads are limited to; null: none (only an admin token sees them). */
  tenant: string | null;
  scopes: Scope[];
  /** ISO time it was created. */
  createdAt: string;
  /** ISO time it was revoked; a revoked token is refused. */
  revokedAt?: string;
}

/** Who is asking: the token's id, tenant and scopes. Without any token configured, an open viewer. */
export interface Viewer {
  /** The token's id; undefined when the service is open. */
  tokenId: string | undefined;
  tenant: string | null;
  scopes: ReadonlySet<Scope>;
  /** A token many clients share (`FILES_TOKEN`), or none: limits count per client address, not per token. */
  shared?: boolean;
}

/** The viewer of a service with no token configured: may do everything, owns nothing. */
export const OPEN_VIEWER: Viewer = {
  tokenId: undefined,
  tenant: null,
  scopes: new Set(SCOPES),
  shared: true,
};

/** Whether `viewer` may see a file of `tenant`: an admin sees every file, anyone else those of its own tenant. */
export function canSee(viewer: Viewer, tenant: string | null | undefined): boolean {
  return viewer.scopes.has('admin') || (tenant ?? null) === viewer.tenant;
}

const hash = (token: string) => createHash('sha256').update(token).digest('hex');

const TENANT = /^[a-z0-9][a-z0-9._-]{0,62}$/i;
const ID = /^[a-z0-9][a-z0-9._-]{0,62}$/i;

function invalid(path: string, why: string): FilesError {
  return new FilesError('ERR_WEFT_FILES_CONFIG', `FILES_TOKENS_FILE ${path}: ${why}`);
}

/** Parses and checks a tokens file's text. */
export function parseTokens(text: string, path: string): TokenEntry[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw invalid(path, `not JSON (${(err as Error).message})`);
  }
  const list = (data as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(list)) throw invalid(path, 'must be an object with a "tokens" array');
  const ids = new Set<string>();
  return list.map((raw: unknown, i) => {
    const t = raw as Partial<TokenEntry> | null;
    const where = `tokens[${i}]`;
    if (typeof t?.id !== 'string' || !ID.test(t.id))
      throw invalid(path, `${where}.id must be a name ([a-z0-9._-])`);
    if (ids.has(t.id)) throw invalid(path, `${where}.id "${t.id}" appears twice`);
    ids.add(t.id);
    if (typeof t.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256))
      throw invalid(path, `${where}.sha256 must be 64 hex digits (the token is never stored itself)`);
    if (t.tenant !== null && (typeof t.tenant !== 'string' || !TENANT.test(t.tenant)))
      throw invalid(path, `${where}.tenant must be a name ([a-z0-9._-]) or null`);
    if (!Array.isArray(t.scopes) || t.scopes.length === 0 || !t.scopes.every((s) => SCOPES.includes(s)))
      throw invalid(path, `${where}.scopes must list some of ${SCOPES.join(', ')}`);
    return {
      id: t.id,
      sha256: t.sha256,
      tenant: t.tenant,
      scopes: [...new Set(t.scopes)],
      createdAt: typeof t.createdAt === 'string' ? t.createdAt : '',
      ...(typeof t.revokedAt === 'string' ? { revokedAt: t.revokedAt } : {}),
    };
  });
}

/**
 * The tokens of a file, looked up by hash; the file is read again once it changed. A file that becomes unreadable or
 * invalid while the service runs keeps the last good tokens, and says so (a half-written edit must not open or close
 * the service).
 */
export class TokenStore {
  readonly path: string;
  #byHash = new Map<string, Viewer>();
  #mtimeMs = -1;
  #size = -1;
  #checkedAt = 0;
  #checking: Promise<void> | undefined;
  readonly #onError: (err: Error) => void;

  /** Reads `path` now: a missing or invalid file fails the start with `ERR_WEFT_FILES_CONFIG`. */
  constructor(path: string, onError: (err: Error) => void = () => {}) {
    this.path = path;
    this.#onError = onError;
    let text: string;
    let st: { mtimeMs: number; size: number };
    try {
      st = statSync(path);
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw invalid(
        path,
        `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
    this.#use(parseTokens(text, path), st);
  }

  #use(entries: TokenEntry[], st: { mtimeMs: number; size: number }): void {
    const byHash = new Map<string, Viewer>();
    for (const e of entries) {
      if (e.revokedAt) continue;
      byHash.set(e.sha256, { tokenId: e.id, tenant: e.tenant, scopes: new Set(e.scopes) });
    }
    this.#byHash = byHash;
    this.#mtimeMs = st.mtimeMs;
    this.#size = st.size;
  }

  /** Tokens that are not revoked. */
  get size(): number {
    return this.#byHash.size;
  }

  /** The viewer of `token`; undefined when it is unknown or revoked. */
  async authenticate(token: string): Promise<Viewer | undefined> {
    await this.#fresh();
    return this.#byHash.get(hash(token));
  }

  /** Reads the file again when it changed, at most once a second; concurrent callers share one check. */
  #fresh(): Promise<void> {
    const now = Date.now();
    if (now - this.#checkedAt < 1_000) return this.#checking ?? Promise.resolve();
    this.#checkedAt = now;
    this.#checking = (async () => {
      try {
        const st = await stat(this.path);
        if (st.mtimeMs === this.#mtimeMs && st.size === this.#size) return;
        this.#use(parseTokens(await readFile(this.path, 'utf8'), this.path), st);
      } catch (err) {
        this.#onError(err as Error);
      } finally {
        this.#checking = undefined;
      }
    })();
    return this.#checking;
  }
}

/** A new token: `wft_` and 43 characters of base64url (32 random bytes). */
export function newToken(): string {
  return `wft_${randomBytes(32).toString('base64url')}`;
}

async function readEntries(path: string): Promise<TokenEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return parseTokens(text, path);
}

/** Writes the file whole, through a temporary file and a rename: a reader never sees half of it. */
async function writeEntries(path: string, entries: TokenEntry[]): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ tokens: entries }, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

/** Adds a token to the file (created when missing); resolves with the token itself, which is stored nowhere. */
export async function createToken(
  path: string,
  options: { id: string; tenant: string | null; scopes: Scope[] },
): Promise<string> {
  const entries = await readEntries(path);
  if (entries.some((e) => e.id === options.id))
    throw new FilesError('ERR_WEFT_FILES_BAD_REQUEST', `A token named "${options.id}" exists already`);
  const token = newToken();
  const entry: TokenEntry = {
    id: options.id,
    sha256: hash(token),
    tenant: options.tenant,
    scopes: options.scopes,
    createdAt: new Date().toISOString(),
  };
  parseTokens(JSON.stringify({ tokens: [...entries, entry] }), path); // the same checks as when it is read
  await writeEntries(path, [...entries, entry]);
  return token;
}

/** Marks a token revoked (kept in the file, so its id is not reused by mistake); false when there is none. */
export async function revokeToken(path: string, id: string): Promise<boolean> {
  const entries = await readEntries(path);
  const entry = entries.find((e) => e.id === id);
  if (!entry) return false;
  entry.revokedAt ??= new Date().toISOString();
  await writeEntries(path, entries);
  return true;
}

/** The file's tokens, without their hashes. */
export async function listTokens(path: string): Promise<Omit<TokenEntry, 'sha256'>[]> {
  return (await readEntries(path)).map(({ sha256: _, ...rest }) => rest);
}
