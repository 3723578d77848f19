// Uploads a minute per client address (FILES_UPLOADS_PER_MINUTE): 429 ERR_WEFT_FILES_RATE_LIMITED with Retry-After
// and RateLimit-* headers before the body is read (no temp file); the same limit across the two workers of a
// `weft start` (the supervisor's shared counters), through a reload; and across two nodes on Redis.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { limitKey } from '../src/http/rate-limit.ts';
import { OPEN_VIEWER } from '../src/tokens.ts';
import { type Cluster, startCluster, weft } from './cluster-helpers.ts';
import { type Running, startService } from './helpers.ts';
import { DATABASE_URL, REDIS_URL, type SharedBackends, serviceSkip, sharedBackends } from './services.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { id?: string; error?: { code: string; message: string } };
}

/** One upload on a connection of its own (so that a supervisor's workers share the requests). */
function upload(
  url: string,
  name: string,
  headers: Record<string, string> = {},
  path = '/files',
): Promise<Answer> {
  const body = Buffer.from(`hello ${name}\n`);
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${path}?name=${name}`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'text/plain', 'content-length': String(body.length), ...headers },
        signal: AbortSignal.timeout(10_000),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : {} }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const statuses = (answers: Answer[]) => answers.map((a) => a.status);

describe('what an upload is counted against', () => {
  it('its tenant, else its own token, else the client address (an open service, or the shared FILES_TOKEN)', () => {
    const scopes = new Set(['read', 'write'] as const);
    assert.equal(limitKey({ tokenId: 'a', tenant: 'acme', scopes }, '10.0.0.1'), 'tenant:acme');
    assert.equal(limitKey({ tokenId: 'ci', tenant: null, scopes }, '10.0.0.1'), 'token:ci');
    assert.equal(limitKey(OPEN_VIEWER, '10.0.0.1'), 'ip:10.0.0.1');
    assert.equal(
      limitKey({ tokenId: 'FILES_TOKEN', tenant: null, scopes, shared: true }, '10.0.0.2'),
      'ip:10.0.0.2',
    );
  });
});

describe('upload rate limit, one process', () => {
  let s: Running;
  after(() => s?.stop());

  it('lets the limit through, then 429 with Retry-After and RateLimit-* headers, before the body is read', async () => {
    s = await startService({ uploadsPerMinute: 3, token: 'secret-token' });
    const auth = { authorization: 'Bearer secret-token' };
    // A refused token is not counted.
    assert.equal((await upload(s.url, 'bad', { authorization: 'Bearer wrong' })).status, 401);
    const answers: Answer[] = [];
    for (let i = 0; i < 5; i++) answers.push(await upload(s.url, `f${i}`, auth));
    assert.deepEqual(statuses(answers), [201, 201, 201, 429, 429]);
    const ok = answers[0]!;
    assert.equal(ok.headers['ratelimit-limit'], '3');
    assert.equal(ok.headers['ratelimit-remaining'], '2');
    const refused = answers[3]!;
    assert.equal(refused.body.error?.code, 'ERR_WEFT_FILES_RATE_LIMITED');
    assert.match(refused.body.error?.message ?? '', /3 a minute/);
    const retry = Number(refused.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    assert.equal(refused.headers['ratelimit-limit'], '3');
    assert.equal(refused.headers['ratelimit-remaining'], '0');
    assert.ok(Number(refused.headers['ratelimit-reset']) >= 1);
    // A tus creation is an upload too.
    const tus = await upload(
      s.url,
      't',
      { ...auth, 'tus-resumable': '1.0.0', 'upload-length': '5' },
      '/uploads',
    );
    assert.equal(tus.status, 429);
    // Nothing of the refused ones was kept.
    const tmp = readdirSync(join(s.dataDir, 'tmp')).filter((f) => !f.startsWith('.'));
    assert.deepEqual(tmp, [], 'no temp file');
    const listed = (await (await fetch(`${s.url}/files`)).json()) as { files: unknown[] };
    assert.equal(listed.files.length, 3);
    assert.equal(s.rateLimited(), 3, 'counted for /metrics');
  });
});

describe('upload rate limit under weft start (2 workers)', () => {
  let c: Cluster | undefined;
  after(async () => {
    if (c && c.child.exitCode === null) await weft(c, ['stop']);
  });

  it('holds across both workers (exactly the limit, not twice it), and through a rolling reload', async () => {
    // WEFT_METRICS_PORT: the supervisor merges every worker's metrics, which /metrics then serves.
    c = await startCluster({ FILES_UPLOADS_PER_MINUTE: '10', WEFT_METRICS_PORT: '0' });
    const first = await Promise.all(Array.from({ length: 20 }, (_, i) => upload(c!.url, `a${i}`)));
    assert.equal(first.filter((a) => a.status === 201).length, 10, 'exactly the limit');
    assert.equal(first.filter((a) => a.status === 429).length, 10);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    const refusedBy = [
      ...metrics.matchAll(/^files_uploads_rate_limited_total\{[^}]*worker="(\d)"[^}]*\} (\d+)$/gm),
    ];
    assert.equal(
      refusedBy.reduce((n, m) => n + Number(m[2]), 0),
      10,
      'the refusals, summed over the workers',
    );
    assert.equal((await weft(c, ['reload'])).code, 0);
    const later = await Promise.all(Array.from({ length: 4 }, (_, i) => upload(c!.url, `b${i}`)));
    assert.deepEqual(statuses(later), [429, 429, 429, 429], 'the count outlived the reload');
  });
});

const skip = await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL });

describe('upload rate limit across two nodes on Redis', { skip }, () => {
  let shared: SharedBackends;
  let a: Running;
  let b: Running;
  after(async () => {
    await a?.stop();
    await b?.stop();
    await shared?.cleanup();
  });

  it('one limit for every node', async () => {
    shared = await sharedBackends('ratelimit');
    a = await startService({ ...shared.urls, uploadsPerMinute: 4 });
    b = await startService({ ...shared.urls, uploadsPerMinute: 4 });
    const onA = [];
    for (let i = 0; i < 3; i++) onA.push(await upload(a.url, `a${i}`));
    const onB = [];
    for (let i = 0; i < 3; i++) onB.push(await upload(b.url, `b${i}`));
    assert.deepEqual(statuses(onA), [201, 201, 201]);
    assert.deepEqual(statuses(onB), [201, 429, 429], 'B counts what A let through');
    assert.equal(onB[1]!.body.error?.code, 'ERR_WEFT_FILES_RATE_LIMITED');
  });
});
