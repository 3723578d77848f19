import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { after, describe, it } from 'node:test';
import { within } from '../helpers.ts';

const children = new Set<import('node:child_process').ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Starts the docs' watchServers() example; resolves with its port once it listens. */
async function startExample() {
  const script = new URL('./fixtures/watched-server.ts', import.meta.url).pathname;
  const child = spawn(
    process.execPath,
    [...process.execArgv.filter((a) => a.startsWith('--conditions')), script],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
  });
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  await within(
    new Promise<void>((resolve) => {
      const poll = () => (/port \d+/.test(out) ? resolve() : setTimeout(poll, 5));
      poll();
    }),
    10_000,
    'the example to listen',
  );
  return { child, exit, port: Number(/port (\d+)/.exec(out)![1]), output: () => out };
}

function get(port: number, path: string, agent: Agent) {
  return new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('watchServers()', () => {
  it('drains a server the application never handed to Weft: in-flight requests answered with Connection: close, then exit', async () => {
    const app = await startExample();
    const agent = new Agent({ keepAlive: true });
    assert.equal((await get(app.port, '/', agent)).status, 200); // a keep-alive socket the watch must know
    const inflight = get(app.port, '/?ms=300', agent);
    await new Promise((r) => setImmediate(r));
    app.child.kill('SIGTERM');
    const answer = await within(inflight, 10_000, 'the in-flight request');
    assert.deepEqual(answer, { status: 200, connection: 'close' });
    assert.equal(await within(app.exit, 15_000, 'the example to exit'), 0);
    assert.match(app.output(), /drained 1 server\(s\), 0 connections left/);
    agent.destroy();
  });

  it('lingering close: a request written after Connection: close is dropped with a FIN, never a reset', async () => {
    const app = await startExample();
    // A raw client that behaves like stock autocannon: it writes its next request without reading the first answer.
    const socket = connect(app.port, '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (d: Buffer) => {
      received += d;
    });
    const errors: string[] = [];
    socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    const ended = once(socket, 'end');
    const closed = once(socket, 'close'); // may follow 'end' at once (Node 22): listened for from the start
    // Whether the drain starts before or after this request arrives, its answer is the last on the connection.
    socket.write('GET /?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n');
    app.child.kill('SIGTERM');
    await within(
      new Promise<void>((resolve) => {
        const poll = () => (received.includes('\r\n\r\nok') ? resolve() : setTimeout(poll, 5));
        poll();
      }),
      10_000,
      'the first answer',
    );
    assert.match(received, /connection: close/i);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'); // the one a compliant client would not send
    await within(ended, 10_000, "the server's FIN");
    socket.end();
    await within(closed, 10_000, 'the socket to close');
    assert.deepEqual(errors, [], 'no ECONNRESET');
    assert.equal((received.match(/HTTP\/1\.1 200/g) ?? []).length, 1, 'the late request is not answered');
    assert.equal(await within(app.exit, 15_000, 'the example to exit'), 0);
  });
});
