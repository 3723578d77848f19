// The control socket serves only its owner: another user can neither connect to it nor use `weft` against it.
// Switching users needs root (as CI runs); elsewhere these tests are skipped with the reason printed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../cluster/helpers.ts';
import { within } from '../helpers.ts';
import { app, cli, conditions, killStarted, startWeft } from './helpers.ts';

const NOBODY = 65534;
const skip =
  process.getuid?.() !== 0
    ? 'switching to another user needs root'
    : !reachableByOthers(cli)
      ? `another user cannot read the repository (${cli})`
      : false;
if (skip) console.log(`# skipping the control-socket access tests: ${skip}`);

const root = mkdtempSync(join(tmpdir(), 'weft-access-test-'));
chmodSync(root, 0o755); // so that another user can reach the runtime directory's own checks
const runDir = join(root, 'run');
after(() => {
  killStarted();
  rmSync(root, { recursive: true, force: true });
});

/**
 * A Node binary the user nobody can run: this one, unless it lives where nobody cannot reach (npm exec puts the
 * Node 22 of `npm run test:node22` under /root/.npm), else the repository's pinned one.
 */
const pinned = fileURLToPath(new URL('../../node_modules/node/bin/node', import.meta.url));
const nodeForNobody = reachableByOthers(process.execPath) ? process.execPath : pinned;

function reachableByOthers(file: string): boolean {
  for (let p = file; p !== dirname(p); p = dirname(p)) {
    const mode = statSync(p).mode;
    if ((mode & (p === file ? 0o005 : 0o001)) === 0) return false;
  }
  return true;
}

/** Runs `node <args>` as the user nobody; resolves with its exit code and output. */
function asNobody(args: string[], dir = runDir): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      nodeForNobody,
      args,
      {
        uid: NOBODY,
        gid: NOBODY,
        cwd: '/',
        env: { PATH: process.env.PATH, HOME: '/tmp', WEFT_RUNTIME_DIR: dir },
        timeout: 30_000,
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('control socket access', { skip }, () => {
  it('refuses another user, at the socket and in the weft command', async () => {
    const port = await freePort();
    const { child, exit } = await startWeft([app, '--workers', '1', '--name', 'owned'], {
      env: { ...process.env, PORT: String(port), WEFT_RUNTIME_DIR: runDir },
    });
    const sock = join(runDir, 'owned.sock');

    // The weft command as another user: refused with a clear message and its own exit code.
    const status = await asNobody([...conditions, cli, 'status', '--name', 'owned']);
    assert.equal(status.code, 4, status.stderr);
    assert.match(status.stderr, /must be a directory owned by uid 65534/);
    assert.match(status.stderr, /ERR_WEFT_CONTROL_DENIED/);
    assert.equal(status.stdout, '', 'nothing about the supervisor leaks');

    // A runtime directory inside another user's private one cannot even be reached.
    const inside = await asNobody([...conditions, cli, 'status', '--name', 'owned'], join(runDir, 'sub'));
    assert.equal(inside.code, 4, inside.stderr);
    assert.match(inside.stderr, /Permission denied on the runtime directory .*: it belongs to another user/);

    // Even with the directory opened up by mistake, the 0600 socket itself refuses the connection.
    chmodSync(runDir, 0o711);
    const connect = await asNobody([
      '-e',
      `require('node:net').createConnection(${JSON.stringify(sock)})
        .on('connect', () => { console.log('connected'); process.exit(0); })
        .on('error', (e) => { console.log(e.code); process.exit(1); });`,
    ]);
    assert.equal(connect.stdout.trim(), 'EACCES');
    chmodSync(runDir, 0o700);

    // The owner still controls it.
    process.kill(child.pid!, 'SIGTERM');
    assert.equal(await within(exit, 20_000, 'weft to stop'), 0);
  });
});
