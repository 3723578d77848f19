import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { createMetrics, serveMetrics } from '../../src/metrics/index.ts';
import { track } from '../helpers.ts';
import { parseExposition, value } from './helpers.ts';

async function get(url: string, init: RequestInit = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

describe('serveMetrics', () => {
  it('serves /metrics as Prometheus text and /metrics.json as the snapshot; 404 and 405 otherwise', async () => {
    const metrics = createMetrics({ collectProcess: false });
    track({ destroy: async () => metrics.close() });
    metrics.addLifecycle({ state: 'ready' }, { name: 'api' });
    const server = await serveMetrics(metrics, { port: 0 });
    track({ destroy: () => server.close() });
    assert.equal(server.host, '127.0.0.1');
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

    const text = await get(server.url);
    assert.equal(text.status, 200);
    assert.equal(text.type, 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(
      value(parseExposition(text.body), 'weft_lifecycle_state', { lifecycle: 'api', state: 'ready' }),
      1,
    );

    const json = await get(`${server.url}.json?x=1`);
    assert.equal(json.status, 200);
    assert.match(json.type ?? '', /^application\/json/);
    assert.deepEqual(JSON.parse(json.body).lifecycles, { api: { state: 'ready' } });

    assert.equal((await get(server.url.replace('/metrics', '/other'))).status, 404);
    const post = await get(server.url, { method: 'POST' });
    assert.equal(post.status, 405);
    const head = await get(server.url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  it('a source that throws answers 500 and the server keeps serving', async () => {
    let fail = true;
    const server = await serveMetrics(
      {
        metrics: async () => {
          if (fail) throw new Error('registry broke');
          return '# fine\n';
        },
        snapshot: () => {
          throw new Error('no snapshot');
        },
      },
      { port: 0 },
    );
    track({ destroy: () => server.close() });
    assert.deepEqual(await get(server.url), {
      status: 500,
      type: 'text/plain; charset=utf-8',
      body: 'metrics failed: registry broke\n',
    });
    assert.equal((await get(`${server.url}.json`)).status, 500);
    fail = false;
    assert.equal((await get(server.url)).body, '# fine\n');
  });

  it('rejects with the listen error for a port in use; close is idempotent and ends keep-alive connections', async () => {
    const source = { metrics: async () => '', snapshot: () => ({}) };
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    track({ destroy: () => new Promise<void>((r) => busy.close(() => r())) });
    const { port } = busy.address() as { port: number };
    await assert.rejects(serveMetrics(source, { port }), { code: 'EADDRINUSE' });

    const server = await serveMetrics(source, { port: 0 });
    await get(server.url, { keepalive: true });
    await Promise.all([server.close(), server.close(), server[Symbol.asyncDispose]()]);
    const after = await fetch(server.url, { signal: AbortSignal.timeout(5_000) }).catch((e: Error) => e);
    assert.ok(after instanceof Error, 'nothing listens any more');
  });
});
