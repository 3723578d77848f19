import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { sanitizeName, sniffType } from '../src/upload.ts';
import { configError, makeImage } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'files-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('configuration', () => {
  it('has defaults, then the file, then the environment', () => {
    const d = loadConfig({}, dir);
    assert.equal(d.port, 3000);
    assert.equal(d.host, '127.0.0.1');
    assert.equal(d.dataDir, join(process.cwd(), 'data'));
    assert.equal(d.maxUpload, 1024 ** 3);
    assert.equal(d.token, undefined);
    assert.equal(d.concurrency, 1);
    assert.equal(loadConfig({ WEFT_THREADS: '3' }, dir).concurrency, 3, 'the supervisor’s thread budget');

    writeFileSync(
      join(dir, 'files.config.json'),
      JSON.stringify({ port: 4000, maxUpload: '10M', leaseMs: '1m' }),
    );
    const f = loadConfig({}, dir);
    assert.equal(f.port, 4000);
    assert.equal(f.maxUpload, 10 * 1024 ** 2);
    assert.equal(f.leaseMs, 60_000);
    const e = loadConfig({ PORT: '5000', FILES_MAX_UPLOAD: '2G', FILES_TOKEN: 't' }, dir);
    assert.equal(e.port, 5000);
    assert.equal(e.maxUpload, 2 * 1024 ** 3);
    assert.equal(e.token, 't');
    assert.ok(Object.isFrozen(e));
    rmSync(join(dir, 'files.config.json'));
  });

  it('names the setting, its source and what it must be when a value is wrong', () => {
    assert.throws(
      () => loadConfig({ FILES_MAX_UPLOAD: 'huge' }, dir),
      configError(/"maxUpload" \(env FILES_MAX_UPLOAD\) must be a size/),
    );
    assert.throws(() => loadConfig({ PORT: '70000' }, dir), configError(/"port".*0–65535/));
    assert.throws(() => loadConfig({ FILES_LEASE: '-5s' }, dir), configError(/"leaseMs".*duration/));
    assert.throws(
      () => loadConfig({ FILES_MAX_ATTEMPTS: '0' }, dir),
      configError(/"maxAttempts".*at least 1/),
    );
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ prot: 1 }));
    assert.throws(() => loadConfig({ FILES_CONFIG: 'bad.json' }, dir), configError(/Unknown setting "prot"/));
    writeFileSync(join(dir, 'broken.json'), '{ nope');
    assert.throws(
      () => loadConfig({ FILES_CONFIG: 'broken.json' }, dir),
      configError(/Cannot read the config file/),
    );
    assert.throws(() => loadConfig({ FILES_CONFIG: 'missing.json' }, dir), configError(/Cannot read/));
  });

  it('takes a Redis or RabbitMQ queue and a PostgreSQL database by URL, and refuses other schemes without their password', () => {
    const c = loadConfig({ QUEUE_URL: 'redis://h:6379/1?queue=q', DATABASE_URL: 'postgresql://u@h/db' }, dir);
    assert.equal(c.queueUrl, 'redis://h:6379/1?queue=q');
    assert.equal(c.databaseUrl, 'postgresql://u@h/db');
    assert.equal(loadConfig({}, dir).queueUrl, undefined);
    const refused = (env: NodeJS.ProcessEnv, re: RegExp) =>
      assert.throws(
        () => loadConfig(env, dir),
        (err: Error & { code?: string }) =>
          err.code === 'ERR_WEFT_FILES_CONFIG' && re.test(err.message) && !err.message.includes('s3cret'),
      );
    refused({ QUEUE_URL: 'kafka://u:s3cret@h' }, /"queueUrl".*redis:\/\/.*amqp:\/\//);
    // RabbitMQ: jobs delivered by it, their state in PostgreSQL or in this machine's SQLite file.
    assert.equal(loadConfig({ QUEUE_URL: 'amqp://u:p@h?queue=q' }, dir).queueUrl, 'amqp://u:p@h?queue=q');
    const both = loadConfig({ QUEUE_URL: 'amqps://u:p@h', DATABASE_URL: 'postgres://h/db' }, dir);
    assert.equal(both.queueUrl, 'amqps://u:p@h');
    refused({ DATABASE_URL: 'mysql://u:s3cret@h/db' }, /"databaseUrl".*postgres:\/\//);
  });
});

describe('uploads: names and types', () => {
  it('keeps only a safe last segment of a name', () => {
    assert.equal(sanitizeName('../../x/y.png'), 'y.png');
    assert.equal(sanitizeName('C:\\Users\\me\\a.csv'), 'a.csv');
    assert.equal(sanitizeName('bad\u0000\u001fname\u007f.txt'), 'badname.txt');
    assert.equal(sanitizeName(''), 'upload');
    assert.equal(sanitizeName(undefined), 'upload');
    const long = sanitizeName(`${'a'.repeat(300)}.jpeg`);
    assert.equal(long.length, 200);
    assert.ok(long.endsWith('.jpeg'));
  });

  it('sniffs every image format sharp processes, CSV, text and binary', async () => {
    for (const [format, mime] of [
      ['jpeg', 'image/jpeg'],
      ['png', 'image/png'],
      ['webp', 'image/webp'],
      ['gif', 'image/gif'],
      ['tiff', 'image/tiff'],
      ['avif', 'image/avif'],
    ] as const) {
      assert.equal(await sniffType((await makeImage(format, 16, 16)).subarray(0, 4100)), mime, format);
    }
    assert.equal(await sniffType(Buffer.from('name;age\nann;3\n')), 'text/csv');
    assert.equal(await sniffType(Buffer.from('\uFEFFa\tb\n1\t2')), 'text/csv');
    assert.equal(await sniffType(Buffer.from('hello world\nsecond line\n')), 'text/plain');
    assert.equal(await sniffType(Buffer.from('Dear Ann, hello.\nHow are you\nWe are fine\n')), 'text/plain');
    assert.equal(await sniffType(Buffer.from('a,b\n1,2,3\nbroken\n4,5\n')), 'text/csv', 'some broken rows');
    assert.equal(await sniffType(Buffer.from([0, 1, 2, 3, 255])), 'application/octet-stream');
  });
});
