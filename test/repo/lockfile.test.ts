// The committed lockfile must be complete for every platform: npm writes only the optional platform packages its
// registry serves, so a lockfile missing some is rewritten by `npm install` and refused by `npm ci` on a machine
// whose registry serves them (npm/cli#9846). See the note in .ci/run; `node scripts/complete-lockfile.mjs` mends it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

interface LockEntry {
  version?: string;
  integrity?: string;
  link?: boolean;
  libc?: string[];
  optionalDependencies?: Record<string, string>;
}

const lock = JSON.parse(readFileSync(new URL('../../package-lock.json', import.meta.url), 'utf8')) as {
  lockfileVersion: number;
  packages: Record<string, LockEntry>;
};

/** The entry `name` resolves to from the package at `from`, walking up the node_modules folders as Node does. */
function resolveFrom(from: string, name: string): LockEntry | undefined {
  const parts = from === '' ? [] : from.split('/node_modules/');
  for (let depth = parts.length; depth >= 0; depth--) {
    const prefix = parts.slice(0, depth).join('/node_modules/');
    const key = prefix === '' ? `node_modules/${name}` : `${prefix}/node_modules/${name}`;
    const entry = lock.packages[key];
    if (entry) return entry;
  }
  return undefined;
}

test('the lockfile has an entry, with its integrity hash, for every optional dependency of every platform', () => {
  assert.equal(lock.lockfileVersion, 3);
  const missing: string[] = [];
  let checked = 0;
  for (const [path, entry] of Object.entries(lock.packages)) {
    for (const name of Object.keys(entry.optionalDependencies ?? {})) {
      checked++;
      const target = resolveFrom(path, name);
      if (!target) missing.push(`${path || '(root)'} -> ${name}`);
      else if (!target.link)
        assert.match(target.integrity ?? '', /^sha512-/, `${name} has no sha512 integrity`);
    }
  }
  assert.deepEqual(
    missing,
    [],
    `platform packages missing from package-lock.json (run node scripts/complete-lockfile.mjs):\n${missing.join('\n')}`,
  );
  // Biome, sharp and msgpackr-extract each ship one package per platform: the check must have seen them.
  assert.ok(checked >= 30, `only ${checked} optional dependencies checked`);
});

test('the platform packages of Biome, sharp and msgpackr-extract are the exact versions their parent asks for', () => {
  for (const parent of ['@biomejs/biome', 'sharp', 'msgpackr-extract']) {
    const entry = lock.packages[`node_modules/${parent}`];
    assert.ok(entry, `${parent} is in the lockfile`);
    for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
      assert.equal(resolveFrom(`node_modules/${parent}`, name)?.version, range, `${name} matches ${parent}`);
    }
  }
});

test('no entry carries a libc field, which npm 10 (Node 22) drops and npm 11 writes', () => {
  const withLibc = Object.entries(lock.packages)
    .filter(([, entry]) => entry.libc !== undefined)
    .map(([path]) => path);
  assert.deepEqual(withLibc, [], 'run `node scripts/complete-lockfile.mjs` to make the lockfile portable');
});
