// Deadlines on upload bodies: a client that stops sending mid-body is answered 408 ERR_WEFT_FILES_TIMEOUT after
// uploadIdleTimeout, one that trickles forever after uploadTimeout; either way its socket is closed and its temp
// `.part` file removed, so abandoned uploads cannot pile up.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { filesUnder, type Running, startService } from './helpers.ts';

const IDLE_MS = 300;
const TOTAL_MS = 1_200;

interface Outcome {
  response: string;
  closedAfterMs: number;
}

/** Opens a raw connection, sends `head` and `first`, then whatever `more` does; resolves when the server closes it. */
function stalledUpload(
  url: string,
  head: string,
  first: Buffer,
  boundMs: number,
  more?: (s: Socket) => void,
) {
  const { port } = new URL(url);
  return new Promise<Outcome>((resolve, reject) => {
    const t = performance.now();
    const socket = connect(Number(port), '127.0.0.1');
    let response = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the stalled upload open for more than ${boundMs} ms`));
    }, boundMs);
    socket.on('data', (d) => {
      response += d;
    });
    socket.on('error', () => {}); // a reset after the answer is a close too
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ response, closedAfterMs: performance.now() - t });
    });
    socket.write(head);
    socket.write(first);
    more?.(socket);
  });
}

const connections = (s: Running) =>
  new Promise<number>((resolve, reject) =>
    s.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );

describe('upload deadlines', () => {
  let s: Running;
  before(async () => {
    s = await startService({ uploadIdleTimeout: IDLE_MS, uploadTimeout: TOTAL_MS }, { runJobs: false });
  });
  after(() => s.stop());

  it('answers 408 and closes 50 uploads that stopped sending mid-body; no temp file is left', async () => {
    const raw = (i: number) =>
      `POST /files?name=stalled${i}.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n`;
    const multipart = (i: number) =>
      `POST /files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n` +
      `Content-Length: 10000000\r\n\r\n--XX\r\nContent-Disposition: form-data; name="file"; filename="m${i}.bin"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n';
    const body = Buffer.alloc(64 * 1024, 7);
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        stalledUpload(s.url, i % 2 ? raw(i) : multipart(i), body, IDLE_MS + 3_000),
      ),
    );
    for (const o of outcomes) {
      assert.match(o.response, /^HTTP\/1\.1 408 /);
      assert.match(o.response, /ERR_WEFT_FILES_TIMEOUT/);
      assert.ok(o.closedAfterMs >= IDLE_MS - 20, `closed after ${Math.round(o.closedAfterMs)} ms`);
    }
    assert.deepEqual(
      filesUnder(join(s.dataDir, 'tmp')).filter((f) => f.endsWith('.part')),
      [],
    );
    assert.equal(await connections(s), 0);
    const listed = (await (await fetch(`${s.url}/files`)).json()) as { files: unknown[] };
    assert.equal(listed.files.length, 0);
  });

  it('answers 408 to an upload that keeps trickling past uploadTimeout', async () => {
    let trickle: NodeJS.Timeout | undefined;
    const head = 'POST /files?name=slow.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n';
    const o = await stalledUpload(s.url, head, Buffer.alloc(1024), TOTAL_MS + 3_000, (socket) => {
      // Never idle for IDLE_MS, so only the total deadline can end it.
      trickle = setInterval(() => socket.writable && socket.write(Buffer.alloc(16)), IDLE_MS / 4);
    });
    clearInterval(trickle);
    assert.match(o.response, /^HTTP\/1\.1 408 /);
    assert.match(o.response, /longer than 1200 ms/);
    assert.ok(o.closedAfterMs >= TOTAL_MS - 20, `closed after ${Math.round(o.closedAfterMs)} ms`);
    assert.deepEqual(
      filesUnder(join(s.dataDir, 'tmp')).filter((f) => f.endsWith('.part')),
      [],
    );
  });

  it('still takes a whole upload that pauses less than the idle deadline', async () => {
    const res = await fetch(`${s.url}/files?name=ok.bin`, { method: 'POST', body: Buffer.alloc(200_000, 1) });
    assert.equal(res.status, 201);
  });
});
