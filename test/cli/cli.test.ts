import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseDuration, parseSize } from '../../src/cli/config.ts';
import { freePort } from '../cluster/helpers.ts';
import { until, within } from '../helpers.ts';
import { app, cli, conditions, killStarted, runWeft, startWeft } from './helpers.ts';

const runtime = mkdtempSync(join(tmpdir(), 'weft-cli-test-'));
const env = { ...process.env, WEFT_RUNTIME_DIR: join(runtime, 'run') };
after(() => {
  killStarted();
  rmSync(runtime, { recursive: true, force: true });
});

/** Runs `weft <args>` to completion. */
const weft = (args: string[], cwd = process.cwd()) => runWeft(args, env, cwd);

/** `weft start` in the background; resolves once its control socket is up. */
async function startCli(args: string[], cwd = process.cwd()) {
  const port = await freePort();
  return { port, ...(await startWeft(args, { env: { ...env, PORT: String(port) }, cwd })) };
}

describe('the weft command', () => {
  it('start, status, reload, logs and stop a named cluster over a 0600 control socket', async () => {
    const s = await startCli([app, '--workers', '2', '--name', 'clitest', '--kill-timeout', '5s']);
    const sock = join(env.WEFT_RUNTIME_DIR, 'clitest.sock');
    assert.equal(statSync(sock).mode & 0o777, 0o600, 'only the owner may use the socket');
    assert.equal(statSync(env.WEFT_RUNTIME_DIR).mode & 0o777, 0o700);

    const status = await weft(['status', '--name', 'clitest', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as { slots: { state: string; pid: number }[] };
    assert.deepEqual(
      parsed.slots.map((x) => x.state),
      ['ready', 'ready'],
    );
    const table = await weft(['status', '--name', 'clitest']);
    assert.match(
      table.stdout,
      /^slot\s+pid\s+state\s+uptime\s+restarts\s+rss\s+loop p99\s+elu\s+req\/s\s+last exit$/m,
    );

    const reload = await weft(['reload', '--name', 'clitest']);
    assert.equal(reload.code, 0);
    assert.equal(reload.stdout.trim(), 'reloaded: 2 workers replaced');

    const logs = await weft(['logs', '--name', 'clitest']);
    assert.match(
      logs.stdout,
      /^\[clitest:0\] app listening in \d+$/m,
      'worker output, prefixed with its slot',
    );
    assert.match(logs.stdout, /^\[clitest:1\] app listening in \d+$/m);

    const stop = await weft(['stop', '--name', 'clitest']);
    assert.equal(stop.stdout.trim(), 'stopped (exit code 0)');
    assert.equal(await within(s.exit, 20_000, 'weft start to exit'), 0);
  });

  it('a port already in use is one clear line naming it and PORT, and exit 1 at once (no crash loop)', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as AddressInfo).port;
    try {
      const r = await runWeft(['start', app, '--workers', '2', '--name', 'portbusy'], {
        ...env,
        PORT: String(port),
      });
      const out = r.stdout + r.stderr;
      assert.equal(r.code, 1, out);
      const lines = out.split('\n').filter((l) => l.includes(`port ${port} is already in use`));
      assert.equal(lines.length, 1, `one line says it:\n${out}`);
      assert.match(lines[0]!, new RegExp(`PORT=${port + 1}`));
      assert.doesNotMatch(out, /^\s+at /m, 'no stack trace');
      assert.doesNotMatch(out, /restart|crash/i, 'not retried');
    } finally {
      busy.close();
    }
  });

  it('on a terminal: readable lines and a banner with the URL, workers × threads and metrics; JSON when asked', {
    skip: existsSync('/usr/bin/script') ? false : 'no /usr/bin/script (util-linux) to make a pseudo-terminal',
  }, async () => {
    // `script` runs the command on a pseudo-terminal, as a user's shell would.
    const onTerminal = async (extra: string[]) => {
      const port = await freePort();
      const name = `tty${port}`;
      const command = [
        process.execPath,
        ...conditions,
        cli,
        'start',
        app,
        '--workers',
        '2',
        '--name',
        name,
        '--metrics-port',
        '0',
        ...extra,
      ];
      const child = spawn('/usr/bin/script', ['-qfec', command.map((a) => `'${a}'`).join(' '), '/dev/null'], {
        env: { ...env, PORT: String(port), NO_COLOR: '1', TERM: 'dumb' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
      });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      await until(() => out.includes('control socket'), 30_000, 'weft start on a terminal to come up');
      // The banner follows the control socket line.
      await until(() => /weft status --name|serving on/.test(out), 10_000, 'the banner');
      const stop = await weft(['stop', '--name', name]);
      assert.equal(stop.code, 0, stop.stderr);
      await within(exited, 30_000, 'weft start to exit');
      return { out: out.replaceAll('\r', ''), port, name };
    };

    const pretty = await onTerminal([]);
    assert.match(pretty.out, new RegExp(`weft ▸ ${pretty.name}  http://127\\.0\\.0\\.1:${pretty.port}`));
    assert.match(pretty.out, /workers +2 workers × \d+ threads?/);
    assert.match(pretty.out, /metrics +http:\/\/127\.0\.0\.1:\d+\/metrics/);
    assert.match(pretty.out, /^\d\d:\d\d:\d\d INFO {2}weft +starting 2 workers/m, 'readable lines');
    assert.match(
      pretty.out,
      new RegExp(`^${pretty.name}:0 app listening in \\d+`, 'm'),
      "the workers' lines, by slot",
    );
    assert.doesNotMatch(pretty.out, /^\{"level"/m, 'no JSON on a terminal');

    const json = await onTerminal(['--log-format', 'json']);
    assert.match(json.out, /^\{"level":30,.*"msg":"starting 2 workers"/m);
    assert.match(json.out, new RegExp(`"urls":\\["http://127\\.0\\.0\\.1:${json.port}"\\]`));
    assert.doesNotMatch(json.out, /weft ▸/);
  });

  it('npm run weft -- <command> works in a clone, as the docs say', async () => {
    const root = new URL('../../', import.meta.url).pathname;
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        'npm',
        ['run', '--silent', 'weft', '--', 'status', '--name', 'no-such-cluster'],
        { cwd: root, env, timeout: 60_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /no-such-cluster/);
  });

  it('status with no supervisor running says so and exits 3', async () => {
    const r = await weft(['status', '--name', 'nobody-here']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /No weft supervisor named "nobody-here" is running/);
    assert.match(r.stderr, /ERR_WEFT_NOT_RUNNING/);
  });

  it('bad flags and bad values get a clear error and exit 2', async () => {
    const bad = await weft(['start', app, '--workers', 'lots']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"workers" option must be a number or 'max'/);
    const memory = await weft(['start', app, '--max-memory', 'huge']);
    assert.equal(memory.code, 2);
    assert.match(memory.stderr, /"max-memory" option must be a size like 512M/);
    const unknown = await weft(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
  });

  it('reads weft.config.json from the working directory; flags win over it', async () => {
    const dir = mkdtempSync(join(runtime, 'cfg-'));
    writeFileSync(
      join(dir, 'weft.config.json'),
      JSON.stringify({ exec: app, workers: 1, name: 'fromconfig' }),
    );
    const s = await startCli([], dir);
    const status = await weft(['status', '--name', 'fromconfig', '--json']);
    assert.equal(
      (JSON.parse(status.stdout) as { slots: unknown[] }).slots.length,
      1,
      'workers from the file',
    );
    await weft(['stop', '--name', 'fromconfig']);
    assert.equal(await within(s.exit, 20_000, 'exit'), 0);

    const flagged = await startCli(['--workers', '2'], dir);
    const two = await weft(['status', '--name', 'fromconfig', '--json']);
    assert.equal(
      (JSON.parse(two.stdout) as { slots: unknown[] }).slots.length,
      2,
      '--workers wins over the file',
    );
    await weft(['stop', '--name', 'fromconfig']);
    assert.equal(await within(flagged.exit, 20_000, 'exit'), 0);
  });

  it('parses sizes and durations', () => {
    assert.equal(parseSize('512M', 'x'), 512 * 1024 * 1024);
    assert.equal(parseSize('1G', 'x'), 1024 ** 3);
    assert.equal(parseSize('2048', 'x'), 2048);
    assert.equal(parseDuration('30s', 'x'), 30_000);
    assert.equal(parseDuration('500ms', 'x'), 500);
    assert.equal(parseDuration('2m', 'x'), 120_000);
    assert.throws(() => parseDuration('soon', 'kill-timeout'), { code: 'ERR_WEFT_INVALID_OPTION' });
  });
});
