#!/usr/bin/env node
// Makes package-lock.json the same for every registry and every npm this project supports (see the note in
// .ci/run): adds the optional platform packages that the registry npm last talked to did not serve (asking the
// registry for each one's integrity hash, os and cpu with `npm view`), and drops the `libc` fields that npm 11
// writes and npm 10 (Node 22's) removes. Run it after any change to the dependencies:
//   npm install <package> && node scripts/complete-lockfile.mjs && npm install
// Plain JavaScript, so it runs on whatever Node is on PATH.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const packages = lock.packages;

/** The key `name` resolves to from the package at `from`, walking up node_modules folders as Node does. */
function resolveFrom(from, name) {
  const parts = from === '' ? [] : from.split('/node_modules/');
  for (let depth = parts.length; depth >= 0; depth--) {
    const prefix = parts.slice(0, depth).join('/node_modules/');
    const key = prefix === '' ? `node_modules/${name}` : `${prefix}/node_modules/${name}`;
    if (packages[key]) return key;
  }
  return undefined;
}

let added = 0;
let stripped = 0;
for (const [path, entry] of Object.entries(packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    if (resolveFrom(path, name)) continue;
    const meta = JSON.parse(
      execFileSync(
        'npm',
        [
          'view',
          `${name}@${version}`,
          'version',
          'dist.integrity',
          'os',
          'cpu',
          'license',
          'engines',
          '--json',
        ],
        {
          encoding: 'utf8',
        },
      ),
    );
    // A missing platform package goes where npm hoists it: the top of node_modules.
    const key = `node_modules/${name}`;
    packages[key] = {
      version: meta.version,
      integrity: meta['dist.integrity'],
      ...(meta.cpu ? { cpu: meta.cpu } : {}),
      ...(entry.dev ? { dev: true } : {}),
      ...(meta.license ? { license: meta.license } : {}),
      optional: true,
      ...(meta.os ? { os: meta.os } : {}),
      ...(meta.engines ? { engines: meta.engines } : {}),
    };
    added++;
    console.log(`added ${key}@${meta.version}`);
  }
}
for (const entry of Object.values(packages)) {
  if ('libc' in entry) {
    delete entry.libc;
    stripped++;
  }
}

// npm writes the packages map with the root first, then the paths in locale order.
const sorted = { '': packages[''] };
for (const key of Object.keys(packages)
  .filter((k) => k !== '')
  .sort((a, b) => a.localeCompare(b, 'en'))) {
  sorted[key] = packages[key];
}
lock.packages = sorted;
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`package-lock.json: ${added} platform packages added, ${stripped} libc fields dropped`);
