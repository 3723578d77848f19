// The fault proxy (fault-proxy.ts) against a local echo server: each mode does to existing and new connections what
// it says, and restoring `pass` brings traffic back (held bytes included, in order). Every wait is bounded; the only
// timed windows are the short ones that check nothing arrives while the proxy holds traffic.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { type FaultProxy, faultProxy } from './fault-proxy.ts';

const BOUND_MS = 5_000;
/** How long "nothing arrives" is watched for while the proxy holds traffic. */
const QUIET_MS = 250;

/** Rejects naming `what` when `p` does not settle within `ms`. */
function bounded<T>(p: Promise<T>, what: string, ms = BOUND_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A connected client that collects what it receives, and how it ended. */
interface Client {
  socket: Socket;
  received(): string;
  /** Resolves once `text` was received in full. */
  receive(text: string): Promise<void>;
  /** Resolves with the error code that closed it, or 'end' for a clean close. */
  ended: Promise<string>;
}

async function client(port: number): Promise<Client> {
  const socket = connect({ port, host: '127.0.0.1' });
  let got = '';
  const waiters = new Set<() => void>();
  socket.on('data', (d: Buffer) => {
    got += d.toString();
    for (const w of waiters) w();
  });
  const ended = new Promise<string>((resolve) => {
    let code = 'end';
    socket.on('error', (err: NodeJS.ErrnoException) => {
      code = err.code ?? err.message;
    });
    socket.on('close', () => resolve(code));
  });
  // A proxy that resets new connections may do so before the client saw its connect: then it is just ended.
  await bounded(
    Promise.race([new Promise((r) => socket.once('connect', r)), ended]),
    'the connection to the proxy',
  );
  return {
    socket,
    received: () => got,
    ended,
    receive: (text) =>
      bounded(
        new Promise<void>((resolve) => {
          const check = () => {
            if (got.includes(text)) {
              waiters.delete(check);
              resolve();
            }
          };
          waiters.add(check);
          check();
        }),
        `"${text}" to come back`,
      ),
  };
}

/** Resolves after QUIET_MS, failing if the client received anything more in that time. */
async function nothingArrives(c: Client, what: string): Promise<void> {
  const before = c.received();
  await new Promise((r) => setTimeout(r, QUIET_MS));
  assert.equal(c.received(), before, `nothing arrives ${what}`);
}

describe('faultProxy', () => {
  let echo: Server;
  let echoed = 0;
  let accepted = 0;
  const echoSockets = new Set<Socket>();
  let p: FaultProxy;
  const clients: Client[] = [];
  const open = async () => {
    const c = await client(p.port);
    clients.push(c);
    return c;
  };

  before(async () => {
    echo = createServer((s) => {
      accepted++;
      echoSockets.add(s);
      s.on('close', () => echoSockets.delete(s));
      s.on('error', () => {});
      s.on('data', (d) => {
        echoed += d.length;
        s.write(d);
      });
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    p = await faultProxy({ target: { host: '127.0.0.1', port: (echo.address() as { port: number }).port } });
  });
  beforeEach(() => {
    p.set('pass');
    for (const c of clients.splice(0)) c.socket.destroy();
  });
  after(async () => {
    for (const c of clients) c.socket.destroy();
    await p.close();
    for (const s of echoSockets) s.destroy();
    await new Promise((r) => echo.close(r));
  });

  it('pass forwards both ways', async () => {
    const c = await open();
    c.socket.write('hello');
    await c.receive('hello');
    assert.equal(p.mode, 'pass');
  });

  it('slow delays each chunk by delayMs, then pass is immediate again', async () => {
    const c = await open();
    c.socket.write('warm');
    await c.receive('warm');
    p.set('slow', { delayMs: 150 });
    assert.equal(p.mode, 'slow');
    const t = performance.now();
    c.socket.write('late');
    await c.receive('late');
    // Once on the way there, once on the way back.
    assert.ok(performance.now() - t >= 290, `took ${Math.round(performance.now() - t)} ms`);
  });

  it('blackhole holds traffic on existing and new connections, which go on in order once restored', async () => {
    const existing = await open();
    existing.socket.write('one;');
    await existing.receive('one;');
    p.set('blackhole');
    const acceptedBefore = accepted;
    const bytesBefore = echoed;
    existing.socket.write('two;');
    const fresh = await open(); // accepted by the proxy, but it does not reach the backend
    fresh.socket.write('three;');
    await nothingArrives(existing, 'on an existing connection');
    assert.equal(fresh.received(), '', 'nothing arrives on a new connection');
    assert.equal(accepted, acceptedBefore, 'the new connection was held from the backend');
    assert.equal(echoed, bytesBefore, 'the backend got nothing');
    p.set('pass');
    existing.socket.write('four;');
    await existing.receive('one;two;four;');
    await fresh.receive('three;');
  });

  it('cut closes existing connections and ends new ones at once; pass brings connections back', async () => {
    const existing = await open();
    existing.socket.write('x');
    await existing.receive('x');
    p.set('cut');
    assert.ok(['end', 'ECONNRESET'].includes(await bounded(existing.ended, 'the cut connection to close')));
    const fresh = await open();
    assert.ok(['end', 'ECONNRESET'].includes(await bounded(fresh.ended, 'the new connection to be ended')));
    assert.equal(fresh.received(), '');
    p.set('pass');
    const again = await open();
    again.socket.write('back');
    await again.receive('back');
  });

  it('reset destroys existing and new connections with RST', async () => {
    const existing = await open();
    existing.socket.write('x');
    await existing.receive('x');
    p.set('reset');
    assert.equal(await bounded(existing.ended, 'the reset connection to close'), 'ECONNRESET');
    const fresh = await open();
    assert.equal(await bounded(fresh.ended, 'the new connection to be reset'), 'ECONNRESET');
    p.set('pass');
    const again = await open();
    again.socket.write('back');
    await again.receive('back');
  });

  it('passes a half-close on: the backend answers after the client ended its side', async () => {
    const c = await open();
    c.socket.end('last words');
    await c.receive('last words');
    assert.equal(await bounded(c.ended, 'the connection to close'), 'end');
  });

  it('counts its open connections, and close() ends them and stops listening', async () => {
    const extra = await faultProxy({
      target: { host: '127.0.0.1', port: (echo.address() as { port: number }).port },
    });
    const c = await client(extra.port);
    c.socket.write('ping');
    await c.receive('ping');
    assert.equal(extra.connections, 1);
    await bounded(extra.close(), 'the proxy to close');
    await bounded(c.ended, 'the connection to close with the proxy');
    assert.equal(extra.connections, 0);
    const refused = connect({ port: extra.port, host: '127.0.0.1' });
    const [err] = (await bounded(once(refused, 'error'), 'the refused connection')) as [
      NodeJS.ErrnoException,
    ];
    assert.equal(err.code, 'ECONNREFUSED');
    await extra.close(); // idempotent
  });
});
