import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { within } from '../helpers.ts';

const server = new URL('./fixtures/server.ts', import.meta.url).pathname;
const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

interface Running {
  child: ChildProcess;
  port: number;
  lines: Record<string, unknown>[];
  exit: Promise<number | null>;
}

/** Starts fixtures/server.ts in a child process and waits for it to listen. */
async function start(env: Record<string, string> = {}): Promise<Running> {
  const child = spawn(
    process.execPath,
    [...process.execArgv.filter((a) => a.startsWith('--conditions')), server],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.add(child);
  const lines: Record<string, unknown>[] = [];
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let buffered = '';
  const port = await within(
    new Promise<number>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        buffered += d;
        let nl = buffered.indexOf('\n');
        while (nl >= 0) {
          const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
          buffered = buffered.slice(nl + 1);
          lines.push(line);
          if (typeof line.listening === 'number') resolve(line.listening);
          nl = buffered.indexOf('\n');
        }
      });
      child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
    }),
    20_000,
    'the server to listen',
  );
  return { child, port, lines, exit };
}

describe('lifecycle in a real process', () => {
  it('SIGTERM drains an in-flight request and exits 0', async () => {
    const s = await start();
    const response = fetch(`http://127.0.0.1:${s.port}/?ms=300`).then(async (r) => ({
      status: r.status,
      body: await r.text(),
      connection: r.headers.get('connection'),
    }));
    // Wait until the server has the request, then stop it.
    await within(
      new Promise<void>((resolve) => {
        const poll = () =>
          fetch(`http://127.0.0.1:${s.port}/health/ready`).then(
            () => setTimeout(resolve, 50),
            () => setImmediate(poll),
          );
        poll();
      }),
      5_000,
      'the server to take requests',
    );
    s.child.kill('SIGTERM');
    const res = await within(response, 10_000, 'the in-flight response');
    assert.deepEqual(res, { status: 200, body: 'ok', connection: 'close' });
    assert.equal(await within(s.exit, 10_000, 'exit'), 0);
    assert.ok(s.lines.some((l) => l.msg === 'SIGTERM received: shutting down'));
    const counts = s.lines.find((l) => l.msg === 'counts');
    assert.deepEqual({ started: counts?.started, finished: counts?.finished }, { started: 1, finished: 1 });
  });

  it('SIGINT starts the same shutdown', async () => {
    const s = await start();
    s.child.kill('SIGINT');
    assert.equal(await within(s.exit, 10_000, 'exit'), 0);
    assert.ok(s.lines.some((l) => l.msg === 'SIGINT received: shutting down'));
    assert.ok(
      s.lines.some((l) => l.msg === 'counts'),
      'the flush phase ran',
    );
  });

  it('a second signal during shutdown forces exit 1 with a clear log line', async () => {
    const s = await start({ HANG_HOOK: '1' });
    s.child.kill('SIGTERM');
    await within(
      new Promise<void>((resolve) => {
        const poll = () =>
          s.lines.some((l) => l.msg === 'shutdown started') ? resolve() : setTimeout(poll, 10);
        poll();
      }),
      10_000,
      'the shutdown to start',
    );
    s.child.kill('SIGINT');
    assert.equal(await within(s.exit, 10_000, 'exit'), 1);
    assert.ok(s.lines.some((l) => l.msg === 'SIGINT received again during shutdown: forcing exit now'));
  });

  it('an uncaught exception is logged with its stack and runs the shutdown with exit code 1', async () => {
    const s = await start();
    const res = await fetch(`http://127.0.0.1:${s.port}/?ms=100&throw=1`);
    assert.equal(await res.text(), 'ok', 'the request in flight still completed');
    assert.equal(await within(s.exit, 10_000, 'exit'), 1);
    const line = s.lines.find((l) => l.msg === 'uncaughtException: shutting down with exit code 1');
    assert.equal(line?.err, 'boom outside any request');
  });

  it('an uncaught error during the shutdown makes the exit code 1', async () => {
    const s = await start({ THROW_DURING_SHUTDOWN: '1' });
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 10_000, 'exit'), 1);
    assert.ok(s.lines.some((l) => l.msg === 'uncaughtException during shutdown: the exit code will be 1'));
    assert.ok(
      s.lines.some((l) => l.msg === 'counts'),
      'the later phases still ran',
    );
  });

  it('the deadline forces exit 1 when a hook hangs', async () => {
    const s = await start({ HANG_HOOK: '1', SHUTDOWN_TIMEOUT: '300' });
    s.child.kill('SIGTERM');
    assert.equal(await within(s.exit, 10_000, 'exit'), 1);
    assert.ok(s.lines.some((l) => l.msg === 'shutdown deadline passed: destroying what is left'));
  });
});
