// Quotas on stored bytes per tenant (FILES_TENANT_QUOTA): an upload that does not fit is refused with 507
// ERR_WEFT_FILES_QUOTA, before its body when its length is known, at the quota when it is not; a refused upload leaves
// nothing behind; deleting makes room; what each tenant stores is in /metrics.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createMetrics } from 'weftjs/metrics';
import { bytesText } from '../src/http/files.ts';
import { serviceMetrics } from '../src/metrics.ts';
import { createToken } from '../src/tokens.ts';
import { filesUnder, type Running, startService } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'files-quota-'));
const tokensFile = join(dir, 'tokens.json');
after(() => rmSync(dir, { recursive: true, force: true }));

describe('tenant quotas', () => {
  let s: Running;
  const T: Record<string, string> = {};
  before(async () => {
    T.acme = await createToken(tokensFile, { id: 'acme', tenant: 'acme', scopes: ['read', 'write'] });
    T.globex = await createToken(tokensFile, { id: 'globex', tenant: 'globex', scopes: ['read', 'write'] });
    s = await startService({ tokensFile, tenantQuota: 1_024 }, { runJobs: false });
  });
  after(() => s?.stop());

  const put = (token: string, body: string | ReadableStream<Uint8Array>, init: object = {}) =>
    fetch(`${s.url}/files?name=f.txt`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body,
      ...init,
    });
  const code = async (res: Response) =>
    ((await res.json()) as { error: { code: string; message: string } }).error;
  const stored = () => filesUnder(s.dataDir).filter((f) => !f.includes('.db') && !f.endsWith('link.secret'));

  it('refuses an upload that does not fit with 507, before its body when its length is known', async () => {
    const first = await put(T.acme!, 'a'.repeat(600));
    assert.equal(first.status, 201);
    const files = stored();
    const refused = await put(T.acme!, 'b'.repeat(500));
    assert.equal(refused.status, 507);
    const error = await code(refused);
    assert.equal(error.code, 'ERR_WEFT_FILES_QUOTA');
    assert.match(
      error.message,
      /Tenant acme store 600 bytes of a quota of 1\.0 KiB: this upload of 500 bytes does not fit/,
    );
    assert.deepEqual(stored(), files, 'nothing left behind');
    // Another tenant has a quota of its own.
    assert.equal((await put(T.globex!, 'g'.repeat(900))).status, 201);
  });

  it('says sizes in the units the settings are read in (1024 each)', () => {
    assert.equal(bytesText(600), '600 bytes');
    assert.equal(bytesText(1536), '1.5 KiB');
    // FILES_TENANT_QUOTA=10GB
    assert.equal(bytesText(10 * 1024 ** 3), '10 GiB');
  });

  it('stops an upload of unknown length at the quota, and keeps nothing of it', async () => {
    const files = stored();
    const body = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('c'.repeat(100)));
        controller.close();
      },
    });
    const res = await put(T.acme!, body, { duplex: 'half' });
    assert.equal(res.status, 507);
    assert.equal((await code(res)).code, 'ERR_WEFT_FILES_QUOTA');
    assert.deepEqual(stored(), files, 'the partial upload was removed');
  });

  it('a tus creation that does not fit is refused; deleting makes room', async () => {
    const create = (length: number) =>
      fetch(`${s.url}/uploads`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${T.acme}`,
          'tus-resumable': '1.0.0',
          'upload-length': String(length),
        },
      });
    const refused = await create(500);
    assert.equal(refused.status, 507);
    assert.equal((await code(refused)).code, 'ERR_WEFT_FILES_QUOTA');
    assert.equal((await create(400)).status, 201, 'what fits is created');
    const list = (await (
      await fetch(`${s.url}/files`, { headers: { authorization: `Bearer ${T.acme}` } })
    ).json()) as {
      files: { id: string }[];
    };
    for (const f of list.files) {
      const del = await fetch(`${s.url}/files/${f.id}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${T.acme}` },
      });
      assert.equal(del.status, 204);
    }
    assert.equal((await put(T.acme!, 'd'.repeat(900))).status, 201, 'room again');
  });

  it('says what each tenant stores in /metrics', async () => {
    const metrics = createMetrics();
    const remove = serviceMetrics(metrics, s.bus, s.queue, () => 0, s.catalog);
    try {
      const text = await metrics.metrics();
      assert.match(text, /^files_tenant_stored_bytes\{tenant="acme"\} 900$/m);
      assert.match(text, /^files_tenant_stored_bytes\{tenant="globex"\} 900$/m);
      assert.match(text, /^files_tenant_files\{tenant="acme"\} 1$/m);
    } finally {
      remove();
    }
  });
});
