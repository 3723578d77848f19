// `curl -T file 'http://…/files?name=…'` sends PUT: it is the same upload as POST (stored, sniffed, recorded, 201).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { makeImage, type Running, startService } from './helpers.ts';

const run = promisify(execFile);

describe('PUT /files (curl -T)', () => {
  let s: Running;
  const dir = mkdtempSync(join(tmpdir(), 'files-put-'));
  before(async () => {
    s = await startService({ token: 't0ken' }, { runJobs: false });
  });
  after(async () => {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores the body as POST does, with its jobs, and serves it back', async () => {
    const png = await makeImage('png', 40, 30);
    const path = join(dir, 'photo.png');
    writeFileSync(path, png);
    const { stdout } = await run(
      'curl',
      [
        '-sS',
        '-H',
        'Authorization: Bearer t0ken',
        '-w',
        '\n%{http_code}',
        '-T',
        path,
        `${s.url}/files?name=photo.png`,
      ],
      { timeout: 20_000 },
    );
    const [body, status] = stdout.split('\n');
    assert.equal(status, '201', stdout);
    const up = JSON.parse(body!) as {
      id: string;
      type: string;
      size: number;
      sha256: string;
      jobs: { kind: string }[];
    };
    assert.equal(up.type, 'image/png');
    assert.equal(up.size, png.length);
    assert.equal(up.sha256, createHash('sha256').update(png).digest('hex'));
    assert.deepEqual(
      up.jobs.map((j) => j.kind),
      ['image'],
    );
    const back = Buffer.from(await (await fetch(`${s.url}/files/${up.id}/content`)).arrayBuffer());
    assert.ok(back.equals(png));
  });

  it('asks for the token like POST', async () => {
    const res = await fetch(`${s.url}/files?name=a.txt`, { method: 'PUT', body: 'hello' });
    assert.equal(res.status, 401);
  });
});
