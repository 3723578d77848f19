import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import { connect, constants, createServer as createH2Server } from 'node:http2';
import { createServer as createHttpsServer, Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createLifecycle, type ServerOptions } from '../../src/lifecycle/index.ts';
import { until, within } from '../helpers.ts';
import { memoryLogger } from './helpers.ts';

/** An HTTP server whose handler answers after `?ms=`; resolves once listening. */
async function slowServer(): Promise<{ server: Server; port: number; started: number; finished: number }> {
  const stats = { server: undefined as unknown as Server, port: 0, started: 0, finished: 0 };
  stats.server = createServer((req, res) => {
    stats.started++;
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => {
      res.end('ok');
      stats.finished++;
    }, ms);
  });
  await new Promise<void>((resolve) => stats.server.listen(0, '127.0.0.1', resolve));
  stats.port = (stats.server.address() as { port: number }).port;
  return stats;
}

function lifecycleFor(
  server: import('node:net').Server,
  options: ServerOptions = {},
  shutdownTimeout = 10_000,
) {
  const life = createLifecycle({
    exit: false,
    signals: [],
    handleErrors: false,
    logger: memoryLogger(),
    shutdownTimeout,
  });
  life.addServer(server, options);
  return life;
}

function get(port: number, path: string, agent: Agent) {
  return new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens a raw TCP connection. */
function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

/** Reads from a raw socket until it closes; resolves with what arrived, rejects on a reset. */
function readAll(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.on('data', (d) => {
      data += d;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(data));
  });
}

describe('HTTP drain', () => {
  it('a busy keep-alive connection finishes its request with Connection: close, then closes', async () => {
    const s = await slowServer();
    const life = lifecycleFor(s.server);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    await get(s.port, '/?ms=0', agent); // the socket is now a keep-alive one
    const inflight = get(s.port, '/?ms=200', agent);
    await until(() => s.started === 2, 5_000, 'the request to arrive');
    const t0 = performance.now();
    const code = await within(life.shutdown('test'), 5_000, 'shutdown');
    const res = await inflight;
    assert.deepEqual(res, { status: 200, body: 'ok', connection: 'close' });
    assert.equal(code, 0);
    assert.ok(performance.now() - t0 < 200 + 250 + 100, 'exits soon after the longest in-flight request');
    agent.destroy();
  });

  it('an idle keep-alive connection is closed without waiting for the shutdown timeout', async () => {
    const s = await slowServer();
    const life = lifecycleFor(s.server, { idleGrace: 50 });
    const agent = new Agent({ keepAlive: true });
    await get(s.port, '/', agent);
    const t0 = performance.now();
    assert.equal(await within(life.shutdown('test'), 5_000, 'shutdown'), 0);
    assert.ok(performance.now() - t0 < 1_000, `took ${performance.now() - t0} ms`);
    agent.destroy();
  });

  it('a request arriving on an idle keep-alive socket during drain is answered, never reset', async () => {
    const s = await slowServer();
    const life = lifecycleFor(s.server, { idleGrace: 300 });
    const socket = await rawConnect(s.port);
    const all = readAll(socket);
    socket.write('GET /?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => s.finished === 1, 5_000, 'the first response');
    const done = life.shutdown('test');
    // The client sends its next request on the socket it believes is open, while the server drains.
    socket.write('GET /?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n');
    const data = await within(all, 5_000, 'the socket to close');
    const responses = data.split('HTTP/1.1 200 OK').length - 1;
    assert.equal(responses, 2, 'both requests were answered');
    assert.match(data, /connection: close/i);
    assert.equal(await done, 0);
  });

  it('an https server is drained too: the in-flight request ends with Connection: close, then the shutdown ends', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-tls-'));
    try {
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost'].concat([
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ]),
        { stdio: 'ignore', timeout: 30_000 },
      );
      let started = 0;
      const server = createHttpsServer(
        { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
        (_req, res) => {
          started++;
          setTimeout(() => res.end('ok'), 200);
        },
      );
      const life = lifecycleFor(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as { port: number }).port;
      const agent = new HttpsAgent({ keepAlive: true, rejectUnauthorized: false });
      const inflight = new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
        });
        req.on('error', reject);
        req.end();
      });
      await until(() => started === 1, 5_000, 'the request to arrive');
      assert.equal(await within(life.shutdown('test'), 5_000, 'shutdown'), 0);
      assert.deepEqual(await inflight, { status: 200, connection: 'close' });
      agent.destroy();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('new connections are refused once the listeners phase has run', async () => {
    const s = await slowServer();
    const life = lifecycleFor(s.server);
    assert.equal(await life.shutdown('test'), 0);
    await assert.rejects(rawConnect(s.port), { code: 'ECONNREFUSED' });
  });

  it('keeps accepting during the drain delay, then stops', async () => {
    const s = await slowServer();
    const life = lifecycleFor(s.server, { drainDelay: 150 });
    const done = life.shutdown('test');
    const agent = new Agent({ keepAlive: false });
    const res = await get(s.port, '/', agent);
    assert.equal(res.status, 200, 'a new connection during the delay is served');
    assert.equal(await done, 0);
  });

  it('at the deadline a request that never ends is destroyed and the exit code is 1', async () => {
    const s = await slowServer();
    const life = lifecycleFor(s.server, {}, 150);
    const agent = new Agent({ keepAlive: true });
    const hanging = get(s.port, '/?ms=60000', agent).catch((err: NodeJS.ErrnoException) => err.code);
    await until(() => s.started === 1, 5_000, 'the request to arrive');
    assert.equal(await within(life.shutdown('test'), 5_000, 'shutdown'), 1);
    assert.equal(await hanging, 'ECONNRESET');
    agent.destroy();
  });

  it('HTTP/2: an open stream completes, the session gets GOAWAY, and the server stops', async () => {
    const server = createH2Server();
    let streams = 0;
    server.on('stream', (stream, headers) => {
      streams++;
      const ms = Number(new URL(headers[':path'] ?? '/', 'http://x').searchParams.get('ms') ?? 0);
      setTimeout(() => {
        stream.respond({ ':status': 200 });
        stream.end('h2 ok');
      }, ms);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const life = lifecycleFor(server);
    const client = connect(`http://127.0.0.1:${port}`);
    const goaway = new Promise<number>((resolve) => client.once('goaway', (code) => resolve(code)));
    const body = new Promise<string>((resolve, reject) => {
      const req = client.request({ ':path': '/?ms=150' });
      let data = '';
      req.on('data', (d) => {
        data += d;
      });
      req.on('end', () => resolve(data));
      req.on('error', reject);
      req.end();
    });
    await until(() => streams === 1, 5_000, 'the stream to reach the server');
    const done = life.shutdown('test');
    assert.equal(await within(goaway, 5_000, 'GOAWAY'), constants.NGHTTP2_NO_ERROR);
    assert.equal(await within(body, 5_000, 'the stream'), 'h2 ok');
    assert.equal(await within(done, 5_000, 'shutdown'), 0);
    client.close();
  });

  it('upgraded sockets (WebSocket) are handed to closeUpgraded', async () => {
    const server = createServer();
    server.on('upgrade', (_req, socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const closed: string[] = [];
    const life = lifecycleFor(server, {
      closeUpgraded: (socket) => {
        closed.push('polite');
        socket.end('bye');
      },
    });
    const socket = await rawConnect(port);
    const all = readAll(socket);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n');
    await within(new Promise<void>((r) => socket.once('data', () => r())), 5_000, 'the upgrade');
    assert.equal(await within(life.shutdown('test'), 5_000, 'shutdown'), 0);
    assert.deepEqual(closed, ['polite']);
    assert.match(await all, /bye$/);
  });
});
