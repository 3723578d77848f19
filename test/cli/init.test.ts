// `weft start` as a container's PID 1: it must reap orphaned processes and forward signals. The integration
// tests run it as PID 1 of a new PID namespace (`unshare --pid`), which needs Linux and root.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { INIT_ENV, planInit } from '../../src/cli/init.ts';
import { freePort } from '../cluster/helpers.ts';
import { untilAnswer, within } from '../helpers.ts';
import { app, killStarted, startWeft } from './helpers.ts';

const runtime = mkdtempSync(join(tmpdir(), 'weft-init-test-'));
after(() => {
  killStarted();
  rmSync(runtime, { recursive: true, force: true });
});

const command = ['/usr/bin/node', 'weft.js', 'start', 'app.js'];
/** What /proc calls a Node process: its main thread's name ('MainThread' from Node 24) or the binary's. */
const NODE_NAMES = ['node', 'MainThread'];

describe('planInit', () => {
  it('prefers tini, then dumb-init, then a /bin/sh reaping loop', () => {
    const has = (files: string[]) => (f: string) => files.includes(f);
    const both = planInit(command, { PATH: '/a:/b' }, has(['/b/tini', '/a/dumb-init', '/bin/sh']));
    assert.deepEqual(both, {
      kind: 'exec',
      file: '/b/tini',
      args: ['/b/tini', '--', ...command],
      init: 'tini',
    });
    const dumb = planInit(command, { PATH: '/a:/b' }, has(['/a/dumb-init', '/bin/sh']));
    assert.deepEqual(dumb, {
      kind: 'exec',
      file: '/a/dumb-init',
      args: ['/a/dumb-init', '--', ...command],
      init: 'dumb-init',
    });
    const sh = planInit(command, { PATH: '' }, (f) => f === '/bin/sh');
    assert.equal(sh.kind, 'exec');
    if (sh.kind !== 'exec') return;
    assert.equal(sh.init, 'sh');
    assert.equal(sh.file, '/bin/sh');
    assert.deepEqual(sh.args.slice(0, 2), ['/bin/sh', '-c']);
    assert.deepEqual(sh.args.slice(-command.length), command, 'weft runs again, unchanged, as the child');
  });

  it('does nothing under an init already, when opted out, or with nothing to exec', () => {
    assert.deepEqual(planInit(command, { [INIT_ENV]: '1' }), {
      kind: 'none',
      reason: 'already running under an init',
    });
    assert.deepEqual(planInit(command, { WEFT_INIT: '0' }), { kind: 'none', reason: 'WEFT_INIT=0' });
    const none = planInit(command, { PATH: '' }, () => false);
    assert.equal(none.kind, 'none');
    assert.match(none.kind === 'none' ? none.reason : '', /no tini, dumb-init or \/bin\/sh/);
  });
});

const unshare = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']);
const skip =
  process.platform !== 'linux'
    ? 'needs Linux PID namespaces'
    : unshare.status !== 0
      ? `cannot make a PID namespace here (unshare: ${unshare.error?.message ?? unshare.stderr.toString().trim()}); needs root`
      : false;
if (skip) console.log(`# skipping the PID 1 integration tests: ${skip}`);

interface Proc {
  pid: number;
  comm: string;
  state: string;
}

/** `weft start` as PID 1 of a new PID namespace; resolves once its control socket is up. */
async function startAsPid1(name: string, extraEnv: Record<string, string> = {}) {
  const port = await freePort();
  const { child, exit, output } = await startWeft([app], {
    command: ['unshare', '--pid', '--fork', '--mount-proc', process.execPath],
    env: {
      ...process.env,
      ...extraEnv,
      PORT: String(port),
      WEFT_RUNTIME_DIR: join(runtime, 'run'),
      WEFT_WORKERS: '1',
      WEFT_NAME: name,
    },
  });
  const get = async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).text();
  const procs = async () => JSON.parse(await get('/procs')) as Proc[];
  return { child, exit, output, get, procs };
}

/** The host pid of the namespace's PID 1: the child of `unshare`. */
function namespaceInit(unsharePid: number): number {
  const children = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim();
  return Number(children.split(/\s+/)[0]);
}

describe('weft start as PID 1', { skip }, () => {
  it('re-executes under an init that reaps orphans and forwards SIGTERM for a graceful stop', async () => {
    const s = await startAsPid1('pid1');
    const before = await s.procs();
    const pid1 = before.find((p) => p.pid === 1);
    assert.ok(pid1, 'the namespace has a PID 1');
    // Node names its main thread 'MainThread' from 24 on; before, the process is 'node'.
    assert.ok(!NODE_NAMES.includes(pid1.comm), `weft replaced itself with an init as PID 1 (${pid1.comm})`);
    assert.ok(
      before.some((p) => p.comm !== pid1.comm && p.pid !== 1),
      'weft runs under it as a child',
    );

    assert.equal(await s.get('/orphans?n=3'), 'spawned');
    // The orphans sleep 100 ms, then exit; PID 1 must reap them, so neither they nor zombies remain.
    const last = await untilAnswer(
      s.procs,
      (procs) => !procs.some((p) => p.comm === 'sleep' || p.state === 'Z'),
      10_000,
      'orphans to be reaped',
    );
    assert.deepEqual(
      last.filter((p) => p.state === 'Z'),
      [],
    );

    process.kill(namespaceInit(s.child.pid!), 'SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'weft to stop after SIGTERM to PID 1'), 0);
    assert.match(s.output(), /SIGTERM received/, 'the init forwarded the signal to weft');
    assert.match(s.output(), /every worker drained/);
  });

  it('without the init (WEFT_INIT=0) orphans stay zombies, which is why it exists', async () => {
    const s = await startAsPid1('pid1-bare', { WEFT_INIT: '0' });
    assert.match(s.output(), /running as PID 1 without an init: orphans are not reaped \(WEFT_INIT=0\)/);
    assert.ok(
      NODE_NAMES.includes((await s.procs()).find((p) => p.pid === 1)?.comm ?? ''),
      'weft itself is PID 1',
    );
    await s.get('/orphans?n=3');
    const procs = await untilAnswer(
      s.procs,
      (p) => p.filter((x) => x.state === 'Z').length >= 3,
      10_000,
      'three zombies under a Node PID 1',
    );
    assert.deepEqual(
      procs.filter((p) => p.state === 'Z').map((p) => p.comm),
      ['sleep', 'sleep', 'sleep'],
    );
    process.kill(namespaceInit(s.child.pid!), 'SIGTERM');
    assert.equal(await within(s.exit, 20_000, 'weft to stop'), 0);
  });
});
