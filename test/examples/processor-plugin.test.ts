// examples/processor-plugin: a processor written outside apps/files (a SHA-256 manifest of a ZIP's entries),
// registered by the example's files.config.json, run end to end through the service: upload, job in the pool's
// thread, output served under /derived/; a broken archive and a ZIP bomb are dead-lettered at once with their codes.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import yazl from 'yazl';
import { loadConfig } from '../../apps/files/src/config.ts';
import type { Job } from '../../apps/files/src/queue/types.ts';
import { type Running, startService, until } from '../../apps/files/test/helpers.ts';

const config = fileURLToPath(new URL('../../examples/processor-plugin/files.config.json', import.meta.url));

function zipOf(entries: Record<string, Buffer | null>): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const [name, data] of Object.entries(entries)) {
    if (data === null) zip.addEmptyDirectory(name);
    else zip.addBuffer(data, name);
  }
  zip.end();
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) =>
    zip.outputStream
      .on('data', (c: Buffer) => chunks.push(c))
      .on('end', () => resolve(Buffer.concat(chunks)))
      .on('error', reject),
  );
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('examples/processor-plugin (zip-manifest)', () => {
  let svc: Running;

  before(async () => {
    // The example's own configuration, with a 1 MB unpacking limit so a small bomb shows it.
    const { processors } = loadConfig({ FILES_CONFIG: config }, '/');
    assert.equal(processors.length, 1);
    svc = await startService({
      processors: processors.map((p) => ({ ...p, options: { maxBytes: 1_000_000, maxEntries: 100 } })),
    });
  });
  after(() => svc?.stop());

  async function upload(
    name: string,
    body: Buffer,
  ): Promise<{ id: string; type: string; jobs: { kind: string }[] }> {
    const res = await fetch(`${svc.url}/files?name=${name}`, { method: 'POST', body });
    assert.equal(res.status, 201);
    return (await res.json()) as { id: string; type: string; jobs: { kind: string }[] };
  }

  async function ended(id: string): Promise<Job> {
    let job: Job | undefined;
    await until(
      async () => {
        const meta = (await (await fetch(`${svc.url}/files/${id}`)).json()) as { jobs: Job[] };
        job = meta.jobs.find((j) => j.kind === 'zip-manifest');
        return job?.state === 'completed' || job?.state === 'dead';
      },
      60_000,
      `the zip-manifest job of ${id} to end`,
    );
    return job!;
  }

  it('writes the manifest of an uploaded ZIP: every entry with its size and SHA-256', async () => {
    const a = Buffer.from('hello, zip\n');
    const b = randomBytes(100_000);
    const up = await upload('bundle.zip', await zipOf({ 'a.txt': a, 'dir/': null, 'dir/b.bin': b }));
    assert.equal(up.type, 'application/zip');
    assert.deepEqual(
      up.jobs.map((j) => j.kind),
      ['zip-manifest'],
    );
    const job = await ended(up.id);
    assert.equal(job.state, 'completed', job.lastError ?? '');
    assert.deepEqual(job.result, {
      outputs: ['zip-manifest.json'],
      result: { entries: 2, bytes: a.length + b.length },
    });
    const res = await fetch(`${svc.url}/files/${up.id}/derived/zip-manifest.json`);
    assert.equal(res.status, 200);
    const manifest = (await res.json()) as { entries: { name: string; size: number; sha256: string }[] };
    assert.deepEqual(
      manifest.entries.map(({ name, size, sha256 }) => ({ name, size, sha256 })),
      [
        { name: 'a.txt', size: a.length, sha256: sha(a) },
        { name: 'dir/b.bin', size: b.length, sha256: sha(b) },
      ],
    );
  });

  it('a file that is no ZIP gets no manifest job', async () => {
    const up = await upload('notes.txt', Buffer.from('just some text\n'));
    assert.deepEqual(up.jobs, []);
  });

  it('a broken archive is dead at its first attempt with ERR_ZIP_MANIFEST_BAD_ZIP', async () => {
    const whole = await zipOf({ 'a.txt': randomBytes(5_000) });
    // The local header survives (sniffed as a ZIP); the central directory does not.
    const up = await upload('broken.zip', whole.subarray(0, 200));
    assert.equal(up.type, 'application/zip');
    const job = await ended(up.id);
    assert.equal(job.state, 'dead');
    assert.equal(job.attempts, 1);
    assert.equal(job.errorCode, 'ERR_ZIP_MANIFEST_BAD_ZIP');
  });

  it('a ZIP bomb (3 MB of zeros in a few KB) is refused at its limit with ERR_ZIP_MANIFEST_TOO_LARGE', async () => {
    const bomb = await zipOf({ 'zeros.bin': Buffer.alloc(3_000_000) });
    assert.ok(bomb.length < 20_000, `the bomb is small (${bomb.length} bytes)`);
    const job = await ended((await upload('bomb.zip', bomb)).id);
    assert.equal(job.state, 'dead');
    assert.equal(job.attempts, 1);
    assert.equal(job.errorCode, 'ERR_ZIP_MANIFEST_TOO_LARGE');
  });
});
