// Scoped tokens and tenants (docs/files.md, "Tokens and tenants"): tokens from FILES_TOKENS_FILE, stored hashed,
// revocable while the service runs; a file is its uploading token's tenant's, and another tenant cannot see or fetch
// it by id, listing, rows, outputs, image, jobs or tus upload; admin sees all; the dashboard is the admins'.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FilesEvent } from '../src/events/types.ts';
import { createToken, revokeToken, TokenStore } from '../src/tokens.ts';
import { launchBrowser, requireBrowser, skipWithoutBrowser } from './browser.ts';
import { makeImage, type Running, startService, until, waitFor } from './helpers.ts';
import { DATABASE_URL, REDIS_URL, type SharedBackends, serviceSkip, sharedBackends } from './services.ts';

const nodesSkip = await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL });

const dir = mkdtempSync(join(tmpdir(), 'files-tenants-'));
const tokensFile = join(dir, 'tokens.json');
const CLI = new URL('../src/cli/weft-files.ts', import.meta.url).pathname;
after(() => rmSync(dir, { recursive: true, force: true }));

const T: Record<string, string> = {};
let s: Running;

const auth = (token: string | undefined): Record<string, string> =>
  token === undefined ? {} : { authorization: `Bearer ${token}` };
const get = (path: string, token?: string) => fetch(`${s.url}${path}`, { headers: auth(token) });
async function upload(token: string, name: string, body: Buffer | string) {
  const res = await fetch(`${s.url}/files?name=${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: auth(token),
    body,
  });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as { id: string; jobs: { id: number; kind: string }[] };
}
const completed = (fileId: string, kind: string) => (e: FilesEvent) =>
  e.type === 'job.completed' && e.data.fileId === fileId && e.data.kind === kind;

describe('tokens and tenants', () => {
  let csv: { id: string; jobs: { id: number; kind: string }[] };
  let photo: { id: string };

  before(async () => {
    T.acme = await createToken(tokensFile, { id: 'acme-app', tenant: 'acme', scopes: ['read', 'write'] });
    T.acmeRead = await createToken(tokensFile, { id: 'acme-viewer', tenant: 'acme', scopes: ['read'] });
    T.globex = await createToken(tokensFile, {
      id: 'globex-app',
      tenant: 'globex',
      scopes: ['read', 'write'],
    });
    T.admin = await createToken(tokensFile, { id: 'ops', tenant: null, scopes: ['admin'] });
    // /metrics and the probes as server.ts adds them (their handlers are not what is tested here).
    const handler = async () => 'ok\n';
    s = await startService(
      { tokensFile },
      { http: { metrics: handler, health: { live: handler, ready: handler } } },
    );
    const log = s.events.count;
    csv = await upload(T.acme!, 'people.csv', 'id,name\n1,Ada\n2,Grace\n');
    photo = await upload(T.acme!, 'photo.jpg', await makeImage('jpeg', 320, 240));
    await waitFor(s.events, completed(csv.id, 'csv') as never, 30_000, 'the CSV job', log);
    await waitFor(s.events, completed(photo.id, 'image') as never, 30_000, 'the image job', log);
  });
  after(() => s?.stop());

  it('stores the tokens hashed: the file holds no token', () => {
    const text = readFileSync(tokensFile, 'utf8');
    for (const token of Object.values(T)) assert.ok(!text.includes(token), 'a token in clear');
    assert.match(text, /"sha256": "[0-9a-f]{64}"/);
  });

  it('every route needs a token: 401 without or with an unknown one, 403 without the scope', async () => {
    for (const path of ['/files', `/files/${csv.id}`, `/files/${csv.id}/content`, `/files/${csv.id}/rows`]) {
      const none = await get(path);
      assert.equal(none.status, 401, path);
      assert.equal(
        ((await none.json()) as { error: { code: string } }).error.code,
        'ERR_WEFT_FILES_UNAUTHORIZED',
      );
      assert.equal((await get(path, 'wft_not-a-token')).status, 401, path);
    }
    const readOnly = await fetch(`${s.url}/files?name=x.txt`, {
      method: 'POST',
      headers: auth(T.acmeRead),
      body: 'x',
    });
    assert.equal(readOnly.status, 403);
    assert.equal(
      ((await readOnly.json()) as { error: { code: string } }).error.code,
      'ERR_WEFT_FILES_FORBIDDEN',
    );
    assert.equal((await get('/jobs', T.acme)).status, 403, 'every job of every tenant is the admins’');
    assert.equal((await get('/health/live')).status, 200, 'the probes stay open');
  });

  it('a file is its tenant’s: the other tenant gets 404 by id, content, rows, outputs, image, jobs; not in its list', async () => {
    const file = (await (await get(`/files/${photo.id}`, T.acmeRead)).json()) as {
      tenant: string;
      derived: { name: string }[];
      jobs: { id: number }[];
    };
    assert.equal(file.tenant, 'acme');
    const output = file.derived[0]!.name;
    const job = file.jobs[0]!.id;
    const paths = [
      `/files/${photo.id}`,
      `/files/${photo.id}/content`,
      `/files/${photo.id}/derived/${encodeURIComponent(output)}`,
      `/files/${photo.id}/image?w=64`,
      `/files/${csv.id}/rows`,
      `/jobs/${job}`,
    ];
    for (const path of paths) {
      assert.equal((await get(path, T.acmeRead)).status, 200, `acme reads ${path}`);
      const other = await get(path, T.globex);
      assert.equal(other.status, 404, `globex gets 404 for ${path}`);
      assert.equal(
        ((await other.json()) as { error: { code: string } }).error.code,
        'ERR_WEFT_FILES_NOT_FOUND',
      );
      assert.equal((await get(path, T.admin)).status, 200, `the admin reads ${path}`);
    }
    const globexFile = await upload(T.globex!, 'g.txt', 'globex');
    const ids = async (token: string) =>
      ((await (await get('/files', token)).json()) as { files: { id: string }[] }).files
        .map((f) => f.id)
        .sort();
    assert.deepEqual(await ids(T.acme!), [csv.id, photo.id].sort());
    assert.deepEqual(await ids(T.globex!), [globexFile.id]);
    assert.deepEqual(await ids(T.admin!), [csv.id, photo.id, globexFile.id].sort());
    // Neither can delete or retry the other's: 404, and the file is still there.
    const del = await fetch(`${s.url}/files/${photo.id}`, { method: 'DELETE', headers: auth(T.globex) });
    assert.equal(del.status, 404);
    const retry = await fetch(`${s.url}/jobs/${job}/retry`, { method: 'POST', headers: auth(T.globex) });
    assert.equal(retry.status, 404);
    assert.equal((await get(`/files/${photo.id}`, T.acme)).status, 200);
  });

  it('a tus upload is its creator’s tenant’s, whatever metadata the client sends', async () => {
    const tenantMeta = `tenant ${Buffer.from('globex').toString('base64')}`;
    const create = await fetch(`${s.url}/uploads`, {
      method: 'POST',
      headers: {
        ...auth(T.acme),
        'tus-resumable': '1.0.0',
        'upload-length': '5',
        'upload-metadata': tenantMeta,
      },
    });
    assert.equal(create.status, 201, await create.text());
    const location = create.headers.get('location')!;
    const head = (token: string) =>
      fetch(new URL(location, s.url), {
        method: 'HEAD',
        headers: { ...auth(token), 'tus-resumable': '1.0.0' },
      });
    assert.equal((await head(T.globex!)).status, 404, 'another tenant does not see the upload in progress');
    const patch = (token: string) =>
      fetch(new URL(location, s.url), {
        method: 'PATCH',
        headers: {
          ...auth(token),
          'tus-resumable': '1.0.0',
          'upload-offset': '0',
          'content-type': 'application/offset+octet-stream',
        },
        body: 'hello',
      });
    assert.equal((await patch(T.globex!)).status, 404, 'nor append to it');
    const done = await patch(T.acme!);
    assert.equal(done.status, 204, await done.text());
    const fileId = done.headers.get('x-weft-file-id')!;
    const record = (await (await get(`/files/${fileId}`, T.acme)).json()) as { tenant: string };
    assert.equal(record.tenant, 'acme', 'the metadata sent did not choose the tenant');
    assert.equal((await get(`/files/${fileId}`, T.globex)).status, 404);
    assert.equal((await head(T.globex!)).status, 404, 'nor the finished upload');
  });

  it('the dashboard shows a tenant its own files, events and usage, an admin everything; Basic asks a browser', async () => {
    const none = await get('/dashboard/events');
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Basic /);
    const basic = (token: string) => `Basic ${Buffer.from(`me:${token}`).toString('base64')}`;
    // acme's stream, open while both tenants upload: only acme's events come through it.
    const ac = new AbortController();
    const stream = await fetch(`${s.url}/dashboard/events`, {
      headers: { authorization: basic(T.acme!) },
      signal: ac.signal,
    });
    assert.equal(stream.status, 200);
    const seen: {
      events?: { text: string; owner?: string | null }[];
      files?: { recent: { id: string }[] };
    }[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const chunk of stream.body!) {
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
          const frame = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = frame.split('\n').find((l) => l.startsWith('data: '));
          if (frame.startsWith('event: snapshot') && data) seen.push(JSON.parse(data.slice(6)));
        }
      }
    })().catch(() => {});
    await until(() => seen.length > 0, 10_000, 'a first snapshot on acme’s stream');
    const mine = await upload(T.acme!, 'mine.txt', 'acme’s');
    const theirs = await upload(T.globex!, 'theirs.txt', 'globex’s');
    const texts = () => seen.flatMap((x) => x.events ?? []).map((e) => e.text);
    await until(() => texts().some((t) => t.includes('mine.txt')), 10_000, 'acme’s upload on its stream');
    // One more snapshot after globex's upload was published, so it had its chance to leak.
    const after = seen.length;
    await until(() => seen.length > after + 1, 10_000, 'two more snapshots');
    ac.abort();
    await reading;
    assert.ok(
      !texts().some((t) => t.includes('theirs.txt')),
      `globex’s upload is not on acme’s stream: ${texts()}`,
    );
    for (const x of seen) {
      assert.ok(
        (x.events ?? []).every((e) => e.owner === 'acme'),
        'every event acme sees is acme’s',
      );
      assert.ok(!x.files?.recent.some((f) => f.id === theirs.id), 'nor globex’s files');
      assert.equal((x as { jobs?: unknown }).jobs, undefined, 'nor every tenant’s jobs');
    }
    assert.ok(
      seen.at(-1)!.files!.recent.some((f) => f.id === mine.id),
      'its own recent uploads',
    );
    // snapshot.json: the same view; an admin sees every tenant and the usage table.
    const snap = async (token: string) =>
      (await (
        await fetch(`${s.url}/dashboard/snapshot.json`, { headers: { authorization: basic(token) } })
      ).json()) as {
        files: {
          recent: { id: string; owner: string | null; thumbnail?: string }[];
          tenants?: { name: string | null; files: number }[];
        };
        jobs?: unknown;
      };
    const acmeView = await snap(T.acmeRead!);
    assert.deepEqual(new Set(acmeView.files.recent.map((f) => f.owner)), new Set(['acme']));
    assert.deepEqual(
      acmeView.files.tenants?.map((t) => t.name),
      ['acme'],
    );
    const adminView = await snap(T.admin!);
    assert.ok(
      adminView.files.recent.some((f) => f.id === theirs.id) &&
        adminView.files.recent.some((f) => f.id === mine.id),
    );
    assert.deepEqual(adminView.files.tenants?.map((t) => t.name).sort(), ['acme', 'globex']);
    assert.ok(adminView.jobs, 'the admin sees the jobs');
    // Thumbnails are signed links: they load without the page's credentials (on a content origin there are none).
    const thumb = adminView.files.recent.find((f) => f.id === photo.id)?.thumbnail;
    assert.match(thumb ?? '', /^\/links\/[0-9a-f-]{36}\/derived\/thumbnail\.webp\?expires=\d+&sig=/);
    const image = await fetch(`${s.url}${thumb}`);
    assert.equal(image.status, 200);
    assert.equal(image.headers.get('content-type'), 'image/webp');
    assert.equal((await get('/metrics')).status, 401, '/metrics needs an admin token');
    assert.equal((await get('/metrics', T.acme)).status, 403);
    assert.equal((await get('/metrics', T.admin)).status, 200);
  });

  it('in a browser: the page asks for the token, then shows storage by tenant: every tenant to an admin, its own to a tenant', {
    skip: skipWithoutBrowser,
  }, async () => {
    requireBrowser();
    const browser = await launchBrowser();
    try {
      const rowsFor = async (token: string) => {
        const context = await browser.newContext({ httpCredentials: { username: 'me', password: token } });
        try {
          const page = await context.newPage();
          const res = await page.goto(`${s.url}/`);
          assert.equal(res?.status(), 200);
          await page.waitForSelector('#tenants:not([hidden]) #tenant-rows tr', { timeout: 20_000 });
          return await page.$$eval('#tenant-rows tr', (trs) =>
            trs.map((tr) =>
              [...(tr as unknown as { cells: { textContent: string }[] }).cells].map((c) => c.textContent),
            ),
          );
        } finally {
          await context.close();
        }
      };
      const admin = await rowsFor(T.admin!);
      assert.deepEqual(admin.map((r) => r[0]).sort(), ['acme', 'globex']);
      const acme = await rowsFor(T.acmeRead!);
      assert.deepEqual(
        acme.map((r) => r[0]),
        ['acme'],
      );
      assert.match(acme[0]![2]!, /\d/, 'its stored bytes');
      // Without credentials the page is not shown: the browser is asked for them (headless, it has none to give).
      const anonymous = await browser.newContext();
      try {
        await assert.rejects((await anonymous.newPage()).goto(`${s.url}/`), /ERR_INVALID_AUTH_CREDENTIALS/);
      } finally {
        await anonymous.close();
      }
    } finally {
      await browser.close();
    }
  });

  it('signed links open a file or an output without a token until they expire; altered ones are refused', async () => {
    const link = async (token: string, id: string, body: object) =>
      fetch(`${s.url}/files/${id}/links`, {
        method: 'POST',
        headers: { ...auth(token), 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const made = await link(T.acmeRead!, photo.id, { expiresIn: 600 });
    assert.equal(made.status, 201, await made.clone().text());
    const { url, expiresAt } = (await made.json()) as { url: string; expiresAt: string };
    assert.ok(Math.abs(Date.parse(expiresAt) - Date.now() - 600_000) < 5_000, expiresAt);
    const opened = await fetch(`${s.url}${url}`);
    assert.equal(opened.status, 200);
    const content = await (await get(`/files/${photo.id}/content`, T.acme)).arrayBuffer();
    assert.deepEqual(
      Buffer.from(await opened.arrayBuffer()),
      Buffer.from(content),
      'the same bytes, no token',
    );
    assert.match(
      opened.headers.get('content-security-policy') ?? '',
      /sandbox/,
      'sandboxed as the content route',
    );
    const code = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
    const u = new URL(url, s.url);
    const altered = (edit: (u: URL) => void) => {
      const copy = new URL(u);
      edit(copy);
      return fetch(copy);
    };
    for (const [what, edit] of [
      ['signature', (x: URL) => x.searchParams.set('sig', `${x.searchParams.get('sig')!.slice(0, -2)}AA`)],
      [
        'expiry',
        (x: URL) => x.searchParams.set('expires', String(Number(x.searchParams.get('expires')) + 3600)),
      ],
      ['file', (x: URL) => (x.pathname = x.pathname.replace(photo.id, csv.id))],
      ['no signature', (x: URL) => x.searchParams.delete('sig')],
    ] as const) {
      const res = await altered(edit);
      assert.equal(res.status, 403, what);
      assert.equal(await code(res), 'ERR_WEFT_FILES_LINK_INVALID', what);
    }
    // An output of the file, by the name GET /files/:id lists.
    const file = (await (await get(`/files/${photo.id}`, T.acme)).json()) as { derived: { name: string }[] };
    const name = file.derived[0]!.name;
    const derived = await link(T.acme!, photo.id, { target: `derived/${name}` });
    assert.equal(derived.status, 201);
    const output = await fetch(`${s.url}${((await derived.json()) as { url: string }).url}`);
    assert.equal(output.status, 200);
    assert.equal(output.headers.get('content-type'), 'image/webp');
    // A link for a file the token cannot see, or for nothing, is not made.
    assert.equal((await link(T.globex!, photo.id, {})).status, 404);
    assert.equal((await link(T.acme!, photo.id, { target: 'derived/nope.webp' })).status, 404);
    assert.equal((await link(T.acme!, photo.id, { target: '../etc' })).status, 400);
    for (const expiresIn of [0, -5, 1.5, 8 * 24 * 3600, 'soon'])
      assert.equal((await link(T.acme!, photo.id, { expiresIn })).status, 400, `expiresIn ${expiresIn}`);
    assert.equal((await link('wft_nobody', photo.id, {})).status, 401);
    // One that expires in a second: 403, said so, once past.
    const short = (await (await link(T.acme!, photo.id, { expiresIn: 1 })).json()) as { url: string };
    await until(
      async () => (await fetch(`${s.url}${short.url}`)).status === 403,
      5_000,
      'the link to expire',
    );
    assert.equal(await code(await fetch(`${s.url}${short.url}`)), 'ERR_WEFT_FILES_LINK_EXPIRED');
  });

  it('a revoked token is refused within a second or two, without a restart', async () => {
    const token = await createToken(tokensFile, { id: 'temp', tenant: 'acme', scopes: ['read'] });
    await until(async () => (await get('/files', token)).status === 200, 5_000, 'the new token accepted');
    assert.equal(await revokeToken(tokensFile, 'temp'), true);
    await until(async () => (await get('/files', token)).status === 401, 5_000, 'the revoked token refused');
    assert.equal((await get('/files', T.acme)).status, 200, 'the others still work');
  });
});

describe('the tokens file', () => {
  it('weft-files tokens creates (printing the token once), lists and revokes; bad usage exits 2', () => {
    const file = join(dir, 'cli.json');
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['--conditions=weft-source', CLI, 'tokens', ...args, '--file', file], {
        encoding: 'utf8',
      });
    const created = cli('create', '--id', 'acme-app', '--tenant', 'acme', '--scopes', 'read,write');
    assert.equal(created.status, 0, created.stderr);
    const token = created.stdout.trim();
    assert.match(token, /^wft_[A-Za-z0-9_-]{43}$/);
    assert.ok(!readFileSync(file, 'utf8').includes(token));
    assert.match(cli('list').stdout, /^acme-app\ttenant=acme\tscopes=read,write\tactive$/m);
    assert.equal(cli('create', '--id', 'acme-app', '--scopes', 'read').status, 1, 'an id is unique');
    assert.equal(cli('create', '--id', 'x', '--scopes', 'root').status, 2);
    assert.equal(cli('revoke', 'acme-app').status, 0);
    assert.match(cli('list').stdout, /^acme-app\t.*\trevoked /m);
    assert.equal(cli('revoke', 'nobody').status, 1);
  });

  it('refuses a bad file with ERR_WEFT_FILES_CONFIG naming what is wrong, and keeps the last good one meanwhile', async () => {
    const file = join(dir, 'bad.json');
    const bad: [string, RegExp][] = [
      ['not json', /not JSON/],
      ['{"tokens": 1}', /"tokens" array/],
      [
        '{"tokens": [{"id": "a", "sha256": "secret", "tenant": null, "scopes": ["read"]}]}',
        /sha256 must be 64 hex/,
      ],
      [
        `{"tokens": [{"id": "a", "sha256": "${'a'.repeat(64)}", "tenant": null, "scopes": ["root"]}]}`,
        /scopes/,
      ],
    ];
    for (const [text, why] of bad) {
      writeFileSync(file, text);
      assert.throws(
        () => new TokenStore(file),
        (err: Error & { code?: string }) => err.code === 'ERR_WEFT_FILES_CONFIG' && why.test(err.message),
      );
    }
    assert.throws(() => new TokenStore(join(dir, 'missing.json')), /cannot be read \(ENOENT\)/);
    const good = join(dir, 'good.json');
    const token = await createToken(good, { id: 'a', tenant: 't', scopes: ['read'] });
    const errors: Error[] = [];
    const store = new TokenStore(good, (err) => errors.push(err));
    assert.equal((await store.authenticate(token))?.tenant, 't');
    writeFileSync(good, '{"tokens": [');
    // Read again on use, at most once a second.
    await until(
      async () => (await store.authenticate(token)) !== undefined && errors.length > 0,
      5_000,
      'the broken file noticed',
    );
    assert.equal((await store.authenticate(token))?.tenant, 't', 'the last good tokens are kept');
  });
});

describe('tenants across two nodes (Redis, PostgreSQL, S3)', { skip: nodesSkip }, () => {
  let shared: SharedBackends;
  let a: Running;
  let b: Running;
  const file = join(dir, 'nodes.json');
  const K: Record<string, string> = {};
  before(async () => {
    K.acme = await createToken(file, { id: 'acme', tenant: 'acme', scopes: ['read', 'write'] });
    K.globex = await createToken(file, { id: 'globex', tenant: 'globex', scopes: ['read', 'write'] });
    shared = await sharedBackends('tenants');
    // The same tokens file, link secret and quota on both nodes: what a deployment gives every node.
    const config = {
      ...shared.urls,
      tokensFile: file,
      linkSecret: 'shared-link-secret',
      tenantQuota: 1_000,
      uploadsPerMinute: 3,
    };
    a = await startService(config, { runJobs: false });
    b = await startService(config, { runJobs: false });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await shared?.cleanup();
  });

  it('a file uploaded on one node is its tenant’s on the other; links, quotas, limits and revocations hold on both', async () => {
    const send = (node: Running, token: string, body: string) =>
      fetch(`${node.url}/files?name=n.txt`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body,
      });
    const up = await send(a, K.acme!, 'x'.repeat(600));
    assert.equal(up.status, 201);
    const { id } = (await up.json()) as { id: string };
    const read = (node: Running, token: string) =>
      fetch(`${node.url}/files/${id}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await read(b, K.acme!)).status, 200, 'acme reads it on the other node');
    assert.equal((await read(b, K.globex!)).status, 404, 'globex does not, there either');
    const listed = (await (
      await fetch(`${b.url}/files`, { headers: { authorization: `Bearer ${K.globex}` } })
    ).json()) as {
      files: unknown[];
    };
    assert.deepEqual(listed.files, []);
    // A link made on A opens on B (the same secret).
    const made = await fetch(`${a.url}/files/${id}/links`, {
      method: 'POST',
      headers: { authorization: `Bearer ${K.acme}` },
    });
    const { url } = (await made.json()) as { url: string };
    assert.equal((await fetch(`${b.url}${url}`)).status, 200);
    // The quota counts what the tenant stored through either node.
    const over = await send(b, K.acme!, 'y'.repeat(500));
    assert.equal(over.status, 507);
    // The rate limit is the tenant's, across nodes: 3 a minute. One went through A, the refused one on B counted
    // too (it is checked before the quota), so one more goes through B and the fourth is refused.
    assert.equal((await send(b, K.acme!, 'z')).status, 201, 'the third upload of acme in the minute');
    const fourth = await send(a, K.acme!, 'z');
    assert.equal(fourth.status, 429, 'the fourth upload of acme in the minute');
    assert.match(((await fourth.json()) as { error: { message: string } }).error.message, /for tenant acme/);
    // A token revoked in the shared file is refused by both.
    await revokeToken(file, 'globex');
    for (const node of [a, b])
      await until(
        async () => (await read(node, K.globex!)).status === 401,
        5_000,
        'the revocation on each node',
      );
  });
});
