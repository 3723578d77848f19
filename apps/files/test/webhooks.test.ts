// Webhooks end to end: receivers on loopback record what the service sends. `file.processed` after an image and a
// CSV, `job.dead` for a job that fails for good (and again after a retry), a file that gets both; retries with the
// same delivery id (5xx, a receiver that does not answer, one that is down), a 4xx that dead-letters the delivery
// without a webhook about it; per-upload URLs allowed and refused; the dashboard; the configuration; verifyWebhook;
// the example receiver; the SQLite migration and a stalled job's webhook; the same on BullMQ and PostgreSQL.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db.ts';
import { FilesError } from '../src/errors.ts';
import type { FilesEvent } from '../src/events/types.ts';
import { parseProcessors } from '../src/processors/registry.ts';
import { SqliteQueue } from '../src/queue/sqlite.ts';
import type { Job } from '../src/queue/types.ts';
import type { Storage } from '../src/storage/types.ts';
import {
  type FileProcessedData,
  type JobDeadData,
  signWebhook,
  stalledDead,
  verifyWebhook,
  type WebhookEvent,
  type WebhookPayload,
  WebhookSignatureError,
} from '../src/webhooks.ts';
import { makeImage, type Running, startService, until, waitFor } from './helpers.ts';
import { DATABASE_URL, REDIS_URL, serviceSkip, sharedBackends } from './services.ts';

const SECRET = 'whsec-test-0123456789abcdef';

interface Delivery {
  headers: IncomingHttpHeaders;
  body: string;
  event: WebhookEvent;
}

/** A webhook receiver on loopback: records every request; `answer` picks the status (0: never answer). */
class Receiver {
  readonly requests: Delivery[] = [];
  answer: (d: Delivery) => number = () => 204;
  readonly #server: Server;
  readonly #listeners = new Set<(d: Delivery) => void>();

  private constructor() {
    this.#server = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks).toString('utf8');
      const d = { headers: req.headers, body, event: JSON.parse(body) as WebhookEvent };
      this.requests.push(d);
      const status = this.answer(d);
      if (status !== 0) res.writeHead(status).end();
      for (const listener of this.#listeners) listener(d);
    });
  }

  static async start(port = 0): Promise<Receiver> {
    const r = new Receiver();
    await new Promise<void>((resolve) => r.#server.listen(port, '127.0.0.1', resolve));
    return r;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Deliveries of `event` about `fileId`, in the order they arrived. */
  of(type: WebhookEvent['type'], fileId: string): Delivery[] {
    return this.requests.filter((d) => d.event.type === type && d.event.data.fileId === fileId);
  }

  /** The `n`th delivery (1-based) of `type` about `fileId`, arrived or to come; fails after `ms`. */
  wait(type: WebhookEvent['type'], fileId: string, ms = 30_000, n = 1): Promise<Delivery> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.of(type, fileId)[n - 1];
        if (!found) return;
        clearTimeout(timer);
        this.#listeners.delete(check);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.#listeners.delete(check);
        reject(
          new Error(`timed out after ${ms} ms waiting for ${type} #${n} of file ${fileId} at ${this.origin}`),
        );
      }, ms);
      this.#listeners.add(check);
      check();
    });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

interface Uploaded {
  id: string;
  sha256: string;
  size: number;
  jobs: { id: number; kind: string }[];
}

async function upload(s: Running, body: Buffer | string, name: string, webhook?: string): Promise<Uploaded> {
  const q = webhook ? `&webhook=${encodeURIComponent(webhook)}` : '';
  const res = await fetch(`${s.url}/files?name=${encodeURIComponent(name)}${q}`, { method: 'POST', body });
  const text = await res.text();
  assert.equal(res.status, 201, text);
  return JSON.parse(text) as Uploaded;
}

/** Checks a delivery's signature and headers; returns its event. */
function verified(d: Delivery): WebhookEvent {
  const event = verifyWebhook({ secret: SECRET, header: d.headers['x-weft-signature'], body: d.body });
  assert.equal(d.headers['x-weft-event'], event.type);
  assert.equal(d.headers['x-weft-delivery'], event.id);
  assert.equal(d.headers['content-type'], 'application/json');
  return event;
}

/** The webhook jobs about `fileId`. */
const deliveries = async (s: Running, fileId: string) =>
  (await s.queue.list({ kind: 'webhook', limit: 500 })).filter((j) => j.fileId === fileId);

const failedWebhook = (code: string) => (e: FilesEvent) =>
  e.type === 'job.failed' && e.data.kind === 'webhook' && e.data.code === code;

describe('webhooks (embedded queue)', () => {
  let s: Running;
  let hooks: Receiver;
  let own: Receiver;
  let example: ChildProcess;
  let examplePort: number;
  const exampleOut: string[] = [];
  let broken = false; // makes every job's input fail to copy (a transient fault: retried)

  before(async () => {
    hooks = await Receiver.start();
    own = await Receiver.start();
    const script = fileURLToPath(new URL('../examples/webhook-receiver.ts', import.meta.url));
    example = spawn(
      process.execPath,
      [...process.execArgv.filter((a) => a.startsWith('--conditions')), script],
      {
        env: { ...process.env, FILES_WEBHOOK_SECRET: SECRET, PORT: '0' },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    example.stdout!.setEncoding('utf8');
    examplePort = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('the example receiver did not start within 20 s')),
        20_000,
      );
      example.stdout!.on('data', (chunk: string) => {
        exampleOut.push(...chunk.split('\n').filter(Boolean));
        const m = /listening on (\d+)/.exec(exampleOut.join('\n'));
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      example.once('exit', (code) => reject(new Error(`the example receiver exited (${code})`)));
    });
    s = await startService(
      {
        concurrency: 2,
        maxAttempts: 2,
        retryDelayMs: 50,
        pollMs: 50,
        webhookUrl: `${hooks.origin}/hooks/weft?token=t0ps3cret`,
        webhookSecret: SECRET,
        webhookOrigins: `${own.origin},http://127.0.0.1:${examplePort}`,
        webhookTimeout: 1_000,
        webhookAttempts: 4,
      },
      {
        storage: (inner: Storage) =>
          new Proxy(inner, {
            get(target, key) {
              const value = Reflect.get(target, key, target);
              if (typeof value !== 'function') return value;
              // Decided at each call: the wrappers above this one keep the function they were given.
              return (...args: unknown[]) => {
                if (key === 'localPath' && broken)
                  throw new FilesError('ERR_WEFT_FILES_NO_SPACE', 'no space to copy the input (injected)');
                return value.apply(target, args);
              };
            },
          }),
      },
    );
  });
  after(async () => {
    await s?.stop();
    await hooks?.close();
    await own?.close();
    if (example?.pid && example.exitCode === null) process.kill(example.pid, 'SIGKILL');
  });

  it('file.processed after an image: signed, with the file, its job and its derived outputs', async () => {
    const up = await upload(s, await makeImage('jpeg', 600, 400), 'photo.jpg');
    const d = await hooks.wait('file.processed', up.id);
    assert.equal(d.headers['x-weft-attempt'], '1');
    const event = verified(d);
    assert.equal(event.type, 'file.processed');
    const data = event.data as FileProcessedData;
    assert.equal(data.name, 'photo.jpg');
    assert.equal(data.type, 'image/jpeg');
    assert.equal(data.size, up.size);
    assert.equal(data.sha256, up.sha256);
    assert.equal(data.url, `/files/${up.id}`);
    assert.deepEqual(
      data.jobs.map((j) => [j.id, j.kind, j.state]),
      [[up.jobs[0]!.id, 'image', 'completed']],
    );
    assert.deepEqual(data.jobs[0]!.result, {
      format: 'jpeg',
      width: 600,
      height: 400,
      outputs: ['thumbnail.webp', 'display.webp'],
    });
    assert.deepEqual(data.derived.map((o) => o.name).sort(), ['display.webp', 'thumbnail.webp']);
    assert.equal(data.rows, undefined);
    for (const o of data.derived) assert.equal((await fetch(`${s.url}${o.url}`)).status, 200, o.url);
    assert.ok(d.event.createdAt >= Date.now() - 60_000);
    // The delivery is a job of its own, completed, and not one of the file's.
    const [job] = await deliveries(s, up.id);
    await until(
      async () => (await s.queue.get(job!.id))?.state === 'completed',
      5_000,
      'the delivery recorded',
    );
    assert.deepEqual(((await s.queue.get(job!.id))?.result as { status: number } | undefined)?.status, 204);
    const file = (await (await fetch(`${s.url}/files/${up.id}`)).json()) as Record<string, unknown>;
    assert.deepEqual(
      (file.jobs as { kind: string }[]).map((j) => j.kind),
      ['image'],
    );
    assert.ok(!JSON.stringify(file).includes('webhook'), 'no webhook URL in what anyone can read');
    assert.ok(!JSON.stringify(await (await fetch(`${s.url}/jobs/${job!.id}`)).json()).includes('t0ps3cret'));
  });

  it('file.processed after a CSV, with its rows URL and what was loaded', async () => {
    const up = await upload(s, 'name,age\nann,31\nbob,27\n', 'people.csv');
    const event = verified(await hooks.wait('file.processed', up.id));
    const data = event.data as FileProcessedData;
    assert.equal(data.type, 'text/csv');
    assert.equal(data.rows, `/files/${up.id}/rows`);
    assert.deepEqual(data.jobs[0]!.result, { rows: 2, badRows: 0, columns: ['name', 'age'] });
    assert.deepEqual(data.derived, []);
  });

  it('job.dead for a job that fails for good, and again after a retry that fails again', async () => {
    const jpeg = await makeImage('jpeg', 800, 600);
    const up = await upload(s, jpeg.subarray(0, 600), 'broken.jpg');
    const jobId = up.jobs[0]!.id;
    const event = verified(await hooks.wait('job.dead', up.id));
    assert.equal(event.type, 'job.dead');
    const data = event.data as JobDeadData;
    assert.deepEqual(
      { ...data, error: { ...data.error, message: '' } },
      {
        fileId: up.id,
        name: 'broken.jpg',
        jobId,
        kind: 'image',
        attempts: 1,
        maxAttempts: 2,
        error: { code: 'ERR_WEFT_FILES_BAD_IMAGE', message: '' },
      },
    );
    assert.match(data.error.message, /not a readable image/);
    assert.equal((await fetch(`${s.url}/jobs/${jobId}/retry`, { method: 'POST' })).status, 202);
    const again = verified(await hooks.wait('job.dead', up.id, 30_000, 2));
    assert.notEqual(again.id, event.id, 'another death, another delivery');
    assert.deepEqual(hooks.of('file.processed', up.id), []);
  });

  it('a file whose job dies, then completes once retried, gets job.dead then file.processed', async () => {
    broken = true;
    let up: Uploaded;
    try {
      up = await upload(s, await makeImage('png', 64, 64), 'late.png');
      const dead = verified(await hooks.wait('job.dead', up.id));
      assert.equal((dead.data as JobDeadData).attempts, 2, 'after its attempts ran out');
      assert.equal((dead.data as JobDeadData).error.code, 'ERR_WEFT_FILES_NO_SPACE');
    } finally {
      broken = false;
    }
    assert.deepEqual(hooks.of('file.processed', up.id), []);
    assert.equal((await fetch(`${s.url}/jobs/${up.jobs[0]!.id}/retry`, { method: 'POST' })).status, 202);
    const done = verified(await hooks.wait('file.processed', up.id));
    assert.equal((done.data as FileProcessedData).jobs[0]!.state, 'completed');
    assert.equal(hooks.of('job.dead', up.id).length, 1);
  });

  it('retries a delivery answered 500 twice, and delivers it on the third attempt with the same delivery id', async () => {
    const failures: number[] = [];
    hooks.answer = (d) => {
      if (d.event.data.name !== 'flaky.png') return 204;
      const n = hooks.requests.filter((r) => r.event.data.name === 'flaky.png').length;
      return n <= 2 ? 500 : 204;
    };
    const off = s.bus.on('job.failed', (e) => {
      if (e.data.kind === 'webhook' && !e.data.dead) failures.push(e.data.attempts);
    });
    try {
      const up = await upload(s, await makeImage('png', 32, 32), 'flaky.png');
      const third = await hooks.wait('file.processed', up.id, 30_000, 3);
      const all = hooks.of('file.processed', up.id);
      assert.deepEqual(
        all.map((d) => d.headers['x-weft-attempt']),
        ['1', '2', '3'],
      );
      assert.equal(new Set(all.map((d) => d.headers['x-weft-delivery'])).size, 1, 'one delivery id');
      assert.equal(new Set(all.map((d) => d.body)).size, 1, 'the same body each time');
      for (const d of all) verified(d);
      assert.equal(verified(third).id, third.headers['x-weft-delivery']);
      const [job] = await deliveries(s, up.id);
      await until(async () => (await s.queue.get(job!.id))?.state === 'completed', 5_000, 'delivered');
      assert.equal((await s.queue.get(job!.id))?.attempts, 3);
      assert.deepEqual(failures, [1, 2]);
    } finally {
      off();
      hooks.answer = () => 204;
    }
  });

  it('retries a delivery whose receiver does not answer within webhookTimeout', async () => {
    hooks.answer = (d) =>
      d.event.data.name === 'slow.png' && hooks.of('file.processed', d.event.data.fileId).length === 1
        ? 0
        : 204;
    try {
      const up = await upload(s, await makeImage('png', 32, 32), 'slow.png');
      await hooks.wait('file.processed', up.id, 30_000, 2);
      const timedOut = await waitFor(
        s.events,
        (e): e is Extract<FilesEvent, { type: 'job.failed' }> =>
          failedWebhook('ERR_WEFT_FILES_WEBHOOK_TIMEOUT')(e) && e.data.fileId === up.id,
        5_000,
        'the first attempt to time out',
      );
      assert.match(timedOut.data.error, /did not answer within 1000 ms/);
      assert.doesNotMatch(timedOut.data.error, /t0ps3cret|hooks\/weft/, 'the origin only');
    } finally {
      hooks.answer = () => 204;
    }
  });

  it('dead-letters a delivery answered 400 at once, sends no webhook about it, and the dashboard shows it', async () => {
    hooks.answer = (d) => (d.event.data.name === 'refused.png' ? 400 : 204);
    try {
      const up = await upload(s, await makeImage('png', 32, 32), 'refused.png');
      await hooks.wait('file.processed', up.id);
      const [job] = await deliveries(s, up.id);
      await until(async () => (await s.queue.get(job!.id))?.state === 'dead', 5_000, 'the delivery dead');
      const dead = (await s.queue.get(job!.id))!;
      assert.equal(dead.errorCode, 'ERR_WEFT_FILES_WEBHOOK_REJECTED');
      assert.equal(dead.attempts, 1, 'not retried');
      assert.match(dead.lastError ?? '', /answered 400/);
      // A follow-up would have been queued in the transaction that recorded the death: there is none.
      assert.equal((await deliveries(s, up.id)).length, 1);
      assert.equal(hooks.requests.filter((d) => d.event.data.fileId === up.id).length, 1);

      const snap = (await (await fetch(`${s.url}/dashboard/snapshot.json`)).json()) as {
        webhooks?: {
          counts: Record<string, number>;
          failures: { id: number; code: string; state: string; label: string }[];
        };
      };
      assert.ok(snap.webhooks, 'the dashboard has a webhooks part');
      assert.ok(snap.webhooks.counts.dead! >= 1);
      assert.ok(snap.webhooks.counts.completed! >= 3);
      const shown = snap.webhooks.failures.find((f) => f.id === job!.id);
      assert.equal(shown?.code, 'ERR_WEFT_FILES_WEBHOOK_REJECTED');
      assert.equal(shown?.state, 'dead');
      assert.equal(shown?.label, `file.processed → ${hooks.origin}`);
    } finally {
      hooks.answer = () => 204;
    }
  });

  it("sends an upload's own URL its events too, when its origin is allowed", async () => {
    const url = `${own.origin}/mine?ref=42`;
    const up = await upload(s, await makeImage('png', 48, 48), 'own.png', url);
    const mine = verified(await own.wait('file.processed', up.id));
    const global = verified(await hooks.wait('file.processed', up.id));
    assert.notEqual(mine.id, global.id, 'a delivery each');
    assert.deepEqual(mine.data, global.data);
    const file = await (await fetch(`${s.url}/files/${up.id}`)).text();
    assert.ok(!file.includes('ref=42'), 'the URL is not shown');
  });

  it('refuses an upload whose webhook URL is not allowed, before storing anything (400)', async () => {
    const before = await s.catalog.count();
    for (const bad of [
      'http://169.254.169.254/latest/meta-data',
      'http://127.0.0.1:1/elsewhere',
      `ftp://127.0.0.1:${own.port}/x`,
      `http://user:pw@127.0.0.1:${own.port}/x`,
      'not a url',
    ]) {
      const res = await fetch(`${s.url}/files?name=x.png&webhook=${encodeURIComponent(bad)}`, {
        method: 'POST',
        body: 'hello',
      });
      assert.equal(res.status, 400, bad);
      assert.equal(
        ((await res.json()) as { error: { code: string } }).error.code,
        'ERR_WEFT_FILES_WEBHOOK_URL',
      );
    }
    const twice = await fetch(`${s.url}/files?webhook=${own.origin}/a&webhook=${own.origin}/b`, {
      method: 'PUT',
      body: 'hello',
    });
    assert.equal(twice.status, 400);
    assert.equal(await s.catalog.count(), before, 'nothing stored');
  });

  it('the example receiver verifies what the service sends, and refuses a forged request', async () => {
    const up = await upload(
      s,
      await makeImage('png', 40, 40),
      'example.png',
      `http://127.0.0.1:${examplePort}/`,
    );
    await until(
      () => exampleOut.some((l) => l.includes(`"fileId":"${up.id}"`) && l.includes('file.processed')),
      30_000,
      'the example receiver to print the file.processed event',
    );
    const body = JSON.stringify({ id: 'x', type: 'job.dead', createdAt: 0, data: {} });
    const forged = await fetch(`http://127.0.0.1:${examplePort}/`, {
      method: 'POST',
      body,
      headers: { 'x-weft-signature': signWebhook('another-secret-0123456789', body) },
    });
    assert.equal(forged.status, 400);
    await until(() => exampleOut.includes('{"refused":"mismatch"}'), 5_000, 'the refusal printed');
  });
});

describe('webhooks: a receiver that is down', () => {
  let s: Running | undefined;
  let r: Receiver | undefined;
  after(async () => {
    await s?.stop();
    await r?.close();
  });

  it('is retried until it is up, with the same delivery', async () => {
    const probe = await Receiver.start();
    const port = probe.port;
    await probe.close(); // nothing listens on `port` now
    s = await startService({
      retryDelayMs: 100,
      pollMs: 50,
      webhookUrl: `http://127.0.0.1:${port}/`,
      webhookSecret: SECRET,
    });
    const up = await upload(s, await makeImage('png', 32, 32), 'down.png');
    const refused = await waitFor(
      s.events,
      (e): e is Extract<FilesEvent, { type: 'job.failed' }> =>
        failedWebhook('ERR_WEFT_FILES_WEBHOOK_UNREACHABLE')(e) && e.data.fileId === up.id,
      30_000,
      'a delivery to fail on a refused connection',
    );
    assert.equal(refused.data.dead, false, 'retried');
    assert.match(refused.data.error, /ECONNREFUSED/);
    r = await Receiver.start(port);
    const d = await r.wait('file.processed', up.id);
    verified(d);
    assert.ok(Number(d.headers['x-weft-attempt']) >= 2);
  });
});

describe('webhooks: none configured', () => {
  let s: Running | undefined;
  after(() => s?.stop());

  it('queues no webhook job, and refuses a per-upload URL', async () => {
    s = await startService({ pollMs: 50 });
    const up = await upload(s, await makeImage('png', 32, 32), 'quiet.png');
    await waitFor(
      s.events,
      (e): e is FilesEvent => e.type === 'job.completed' && e.data.fileId === up.id,
      30_000,
      'the image job',
    );
    assert.deepEqual(await s.queue.counts({ kind: 'webhook' }), {
      queued: 0,
      active: 0,
      retrying: 0,
      completed: 0,
      dead: 0,
    });
    const res = await fetch(`${s.url}/files?webhook=${encodeURIComponent('http://127.0.0.1:9/x')}`, {
      method: 'POST',
      body: 'hi',
    });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { error: { message: string } }).error.message, /sends no webhooks/);
    const snap = (await (await fetch(`${s.url}/dashboard/snapshot.json`)).json()) as { webhooks?: unknown };
    assert.equal(snap.webhooks, undefined);
  });
});

describe('webhook configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'files-webhook-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const refused = (env: NodeJS.ProcessEnv, pattern: RegExp) =>
    assert.throws(
      () => loadConfig(env, dir),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_WEFT_FILES_CONFIG');
        assert.match(err.message, pattern);
        return true;
      },
    );

  it('refuses a URL without a secret, a bad scheme, credentials, a short secret and bad origins', () => {
    refused({ FILES_WEBHOOK_URL: 'https://hooks.example.com/x' }, /"webhookSecret".*must be set/);
    refused({ FILES_WEBHOOK_ORIGINS: 'https://app.example.com' }, /"webhookSecret"/);
    refused({ FILES_WEBHOOK_URL: 'ftp://hooks.example.com/x', FILES_WEBHOOK_SECRET: SECRET }, /"webhookUrl"/);
    refused({ FILES_WEBHOOK_URL: 'not a url', FILES_WEBHOOK_SECRET: SECRET }, /"webhookUrl"/);
    refused(
      { FILES_WEBHOOK_URL: 'https://u:hunter2@hooks.example.com/', FILES_WEBHOOK_SECRET: SECRET },
      /without credentials; got "https:\/\/u:\*\*\*@/,
    );
    refused(
      { FILES_WEBHOOK_URL: 'https://hooks.example.com/', FILES_WEBHOOK_SECRET: 'short' },
      /16 characters/,
    );
    refused(
      { FILES_WEBHOOK_ORIGINS: 'https://app.example.com/path', FILES_WEBHOOK_SECRET: SECRET },
      /"webhookOrigins"/,
    );
    refused({ FILES_WEBHOOK_TIMEOUT: '0', FILES_WEBHOOK_SECRET: SECRET }, /"webhookTimeout".*at least 1/);
  });

  it('reads and normalises the settings; none by default', () => {
    const none = loadConfig({}, dir);
    assert.equal(none.webhookUrl, undefined);
    assert.equal(none.webhookTimeout, 10_000);
    assert.equal(none.webhookAttempts, 12);
    const c = loadConfig(
      {
        FILES_WEBHOOK_URL: 'https://hooks.example.com/weft?x=1#frag',
        FILES_WEBHOOK_SECRET: SECRET,
        FILES_WEBHOOK_ORIGINS: ' https://app.example.com/ , http://10.0.0.5:8080 ',
        FILES_WEBHOOK_TIMEOUT: '3s',
        FILES_WEBHOOK_ATTEMPTS: '5',
      },
      dir,
    );
    assert.equal(c.webhookUrl, 'https://hooks.example.com/weft?x=1');
    assert.equal(c.webhookOrigins, 'https://app.example.com,http://10.0.0.5:8080');
    assert.equal(c.webhookTimeout, 3_000);
    assert.equal(c.webhookAttempts, 5);
  });
});

describe('verifyWebhook', () => {
  const body = JSON.stringify({ id: 'd1', type: 'job.dead', createdAt: 1, data: { fileId: 'f' } });
  const now = 1_700_000_000;
  const header = signWebhook(SECRET, body, now);
  const fails = (options: Parameters<typeof verifyWebhook>[0], reason: string) =>
    assert.throws(
      () => verifyWebhook(options),
      (err: unknown) => {
        assert.ok(err instanceof WebhookSignatureError);
        assert.equal(err.code, 'ERR_WEFT_FILES_WEBHOOK_SIGNATURE');
        assert.equal(err.reason, reason);
        return true;
      },
    );

  it('accepts a good signature, as a string or bytes, and returns the event', () => {
    // The scheme receivers implement: HMAC-SHA256 of "<t>.<body>", in hex.
    const mac = createHmac('sha256', SECRET).update(`${now}.${body}`).digest('hex');
    assert.equal(header, `t=1700000000,v1=${mac}`);
    assert.equal(verifyWebhook({ secret: SECRET, header, body, now }).id, 'd1');
    assert.equal(
      verifyWebhook({ secret: SECRET, header, body: Buffer.from(body), now: now + 299 }).type,
      'job.dead',
    );
    // A secret being rotated: one of several v1 values matches.
    const two = `${header.replace(/v1=[0-9a-f]+/, `v1=${'0'.repeat(64)}`)},v1=${header.split('v1=')[1]}`;
    assert.equal(verifyWebhook({ secret: SECRET, header: two, body, now }).id, 'd1');
  });

  it("docs/files.md's dependency-free verify() agrees with the service's signatures", async () => {
    const docs = readFileSync(fileURLToPath(new URL('../../../docs/files.md', import.meta.url)), 'utf8');
    const block = /<!-- webhook-verify[^>]*-->\n```js\n([\s\S]*?)```/.exec(docs)?.[1];
    assert.ok(block, 'the marked block is in docs/files.md');
    const dir = mkdtempSync(join(tmpdir(), 'files-webhook-docs-'));
    try {
      writeFileSync(join(dir, 'verify.mjs'), block);
      const { verify } = (await import(pathToFileURL(join(dir, 'verify.mjs')).href)) as {
        verify: (secret: string, header: string | undefined, body: string | Buffer) => boolean;
      };
      const fresh = signWebhook(SECRET, body);
      assert.equal(verify(SECRET, fresh, body), true);
      assert.equal(verify(SECRET, fresh, Buffer.from(body)), true);
      assert.equal(verify(SECRET, fresh, body.replace('"f"', '"g"')), false);
      assert.equal(verify('another-secret-0123456789', fresh, body), false);
      assert.equal(
        verify(SECRET, signWebhook(SECRET, body, Math.floor(Date.now() / 1000) - 600), body),
        false,
      );
      assert.equal(verify(SECRET, undefined, body), false);
      assert.equal(verify(SECRET, 'garbage', body), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a tampered body, a wrong secret, a stale or future timestamp and a malformed header', () => {
    fails({ secret: SECRET, header, body: body.replace('"f"', '"g"'), now }, 'mismatch');
    fails({ secret: 'another-secret-0123456789', header, body, now }, 'mismatch');
    fails({ secret: SECRET, header, body, now: now + 301 }, 'stale');
    fails({ secret: SECRET, header, body, now: now - 301 }, 'stale');
    fails({ secret: SECRET, header, body, now: now + 60, toleranceSeconds: 30 }, 'stale');
    // The timestamp is signed too: moving it breaks the signature.
    fails({ secret: SECRET, header: header.replace(`t=${now}`, `t=${now + 1}`), body, now }, 'mismatch');
    for (const bad of [undefined, '', [header, header], 'v1=abc', `t=${now}`, `t=${now},v1=xyz`, 'garbage']) {
      fails({ secret: SECRET, header: bad as string, body, now }, 'malformed');
    }
  });
});

describe('webhooks in the embedded database', () => {
  const dir = mkdtempSync(join(tmpdir(), 'files-webhook-db-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('adds the payload and webhook columns to a database made before them', () => {
    const path = join(dir, 'old.db');
    const old = new DatabaseSync(path);
    old.exec(`CREATE TABLE files (id TEXT PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, size INTEGER NOT NULL,
      sha256 TEXT NOT NULL, created_at INTEGER NOT NULL)`);
    old.exec(`CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, file_id TEXT NOT NULL, kind TEXT NOT NULL,
      state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, run_at INTEGER NOT NULL,
      lease_owner TEXT, lease_until INTEGER, last_error TEXT, error_code TEXT, result TEXT, created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER)`);
    old.exec(`INSERT INTO files VALUES ('f', 'a.png', 'image/png', 1, 'x', 1)`);
    old.close();
    const db = openDatabase(path);
    try {
      const columns = (table: string) =>
        (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
      assert.ok(columns('jobs').includes('payload'));
      assert.ok(columns('files').includes('webhook'));
      assert.equal((db.prepare('SELECT webhook FROM files').get() as { webhook: unknown }).webhook, null);
    } finally {
      db.close();
    }
  });

  it("queues a stalled job's job.dead with the claim that dead-letters it, for both targets", async () => {
    const db = openDatabase(join(dir, 'stall.db'));
    try {
      let now = 1_000_000;
      const config = {
        webhookUrl: 'http://127.0.0.1:9/hook',
        webhookSecret: SECRET,
        webhookOrigins: undefined,
        webhookAttempts: 3,
      };
      const q = new SqliteQueue(db, {
        leaseMs: 1_000,
        retryDelayMs: 10,
        clock: () => now,
        stalledDead: (job: Job) => stalledDead(config, job),
      });
      await q.add('f', ['image'], 1);
      await q.claim('A', 1);
      now += 1_001; // A died holding it, on its last attempt
      assert.equal((await q.claim('B', 5)).length, 2, 'the claim hands out the two deliveries it queued');
      const hooks = await q.list({ kind: 'webhook' });
      const payloads = hooks.map((j) => j.payload as WebhookPayload);
      assert.deepEqual(payloads.map((p) => p.target).sort(), ['config', 'upload']);
      for (const p of payloads) {
        assert.equal(p.event.type, 'job.dead');
        assert.equal((p.event.data as JobDeadData).error.code, 'ERR_WEFT_FILES_STALLED');
      }
      assert.ok(hooks.every((j) => j.maxAttempts === 3));
      assert.deepEqual(
        stalledDead({ ...config, webhookUrl: undefined, webhookSecret: undefined }, hooks[0]!),
        [],
      );
    } finally {
      db.close();
    }
  });
});

const skip = await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL });

describe('webhooks on BullMQ and PostgreSQL', { skip }, () => {
  let shared: Awaited<ReturnType<typeof sharedBackends>>;
  let s: Running;
  let hooks: Receiver;
  let own: Receiver;

  before(async () => {
    shared = await sharedBackends('webhooks');
    hooks = await Receiver.start();
    own = await Receiver.start();
    s = await startService({
      queueUrl: shared.urls.queueUrl,
      databaseUrl: shared.urls.databaseUrl,
      concurrency: 2,
      maxAttempts: 2,
      retryDelayMs: 50,
      pollMs: 50,
      webhookUrl: `${hooks.origin}/hook`,
      webhookSecret: SECRET,
      webhookOrigins: own.origin,
    });
  });
  after(async () => {
    await s?.stop();
    await hooks?.close();
    await own?.close();
    await shared?.cleanup();
  });

  it("delivers file.processed to FILES_WEBHOOK_URL and to the upload's own URL (kept in PostgreSQL)", async () => {
    const up = await upload(
      s,
      await makeImage('jpeg', 300, 200),
      `bull-${randomUUID().slice(0, 4)}.jpg`,
      `${own.origin}/x`,
    );
    const [global, mine] = await Promise.all([
      hooks.wait('file.processed', up.id),
      own.wait('file.processed', up.id),
    ]);
    const event = verified(global);
    verified(mine);
    assert.equal((event.data as FileProcessedData).derived.length, 2);
    assert.equal((event.data as FileProcessedData).jobs[0]!.state, 'completed');
    const file = (await (await fetch(`${s.url}/files/${up.id}`)).json()) as { jobs: unknown[] };
    assert.equal(file.jobs.length, 1, "deliveries are not the file's jobs");
    await until(
      async () => (await s.queue.counts({ kind: 'webhook' })).completed >= 2,
      5_000,
      'both deliveries recorded as completed',
    );
  });

  it('job.dead for a corrupt image; a delivery answered 500 then 200 keeps its delivery id', async () => {
    hooks.answer = (d) =>
      d.event.type === 'job.dead' && hooks.requests.filter((r) => r.event.type === 'job.dead').length === 1
        ? 500
        : 204;
    try {
      const jpeg = await makeImage('jpeg', 400, 300);
      const up = await upload(s, jpeg.subarray(0, 500), 'broken.jpg');
      const second = await hooks.wait('job.dead', up.id, 30_000, 2);
      const event = verified(second);
      assert.equal((event.data as JobDeadData).error.code, 'ERR_WEFT_FILES_BAD_IMAGE');
      assert.equal((event.data as JobDeadData).jobId, up.jobs[0]!.id);
      const [first] = hooks.of('job.dead', up.id);
      assert.equal(first!.headers['x-weft-delivery'], second.headers['x-weft-delivery']);
      assert.equal(second.headers['x-weft-attempt'], '2');
      assert.deepEqual(hooks.of('file.processed', up.id), []);
    } finally {
      hooks.answer = () => 204;
    }
  });
});

describe('webhooks and a chain of processors', () => {
  let s: Running;
  let hooks: Receiver;

  before(async () => {
    hooks = await Receiver.start();
    const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
    s = await startService({
      webhookUrl: `${hooks.origin}/hook`,
      webhookSecret: SECRET,
      retryDelayMs: 50,
      processors: parseProcessors(
        [
          { kind: 'first', module: './plugin-modes.ts' },
          { kind: 'second', module: './plugin-modes.ts', after: 'first' },
        ],
        'test',
        fixtures,
      ),
    });
  });
  after(async () => {
    await s?.stop();
    await hooks?.close();
  });

  it('sends file.processed once the last step of the chain completed, with every step in it', async () => {
    const up = await upload(s, 'one two three\n', 'chain.txt');
    assert.deepEqual(
      up.jobs.map((j) => j.kind),
      ['first'],
    );
    const event = verified(await hooks.wait('file.processed', up.id));
    const data = event.data as FileProcessedData;
    assert.deepEqual(
      data.jobs.map((j) => [j.kind, j.state]),
      [
        ['first', 'completed'],
        ['second', 'completed'],
      ],
    );
    assert.deepEqual(data.derived.map((d) => d.name).sort(), ['first.json', 'second.json']);
  });
});
