// Processor plug-ins: configuration, loading, and the jobs of plug-ins run through the service like the built-in
// ones (retries, per-processor attempts and timeout, dead letters with their codes, outputs under /derived/).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type FilesConfig, loadConfig } from '../src/config.ts';
import { chainSteps } from '../src/http/files.ts';
import { defineProcessor, typeMatches } from '../src/processors/plugin.ts';
import { ProcessorRegistry, parseProcessors } from '../src/processors/registry.ts';
import type { Job } from '../src/queue/types.ts';
import { jobsFor } from '../src/upload.ts';
import { configError, makeImage, type Running, startService, until } from './helpers.ts';
import {
  AMQP_URL,
  DATABASE_URL,
  REDIS_URL,
  rabbitBackends,
  serviceSkip,
  sharedBackends,
} from './services.ts';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

describe('processor plug-ins: configuration', () => {
  it('reads processors from the config file, with module paths relative to it, and from FILES_PROCESSORS', () => {
    const dir = mkdtempSync(join(tmpdir(), 'files-plugins-'));
    try {
      const file = join(dir, 'files.config.json');
      writeFileSync(
        file,
        JSON.stringify({
          processors: [
            {
              kind: 'count',
              module: './count.js',
              match: ['text/*'],
              timeout: '30s',
              maxAttempts: 2,
              options: { a: 1 },
            },
          ],
        }),
      );
      const fromFile = loadConfig({ FILES_CONFIG: file }, '/');
      assert.deepEqual(fromFile.processors, [
        {
          kind: 'count',
          module: new URL(`file://${join(dir, 'count.js')}`).href,
          match: ['text/*'],
          timeoutMs: 30_000,
          maxAttempts: 2,
          options: { a: 1 },
        },
      ]);
      const fromEnv = loadConfig({ FILES_PROCESSORS: '[{"kind":"x","module":"./x.js"}]' }, dir);
      assert.deepEqual(fromEnv.processors, [
        { kind: 'x', module: new URL(`file://${join(dir, 'x.js')}`).href },
      ]);
      assert.deepEqual(loadConfig({}, join(dir, 'elsewhere')).processors, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses wrong entries with ERR_WEFT_FILES_CONFIG saying what is wrong', async () => {
    const parse = (raw: unknown) => () => parseProcessors(raw, 'test', '/tmp');
    assert.throws(parse({}), configError(/must be an array/));
    assert.throws(parse([1]), configError(/entry 0 must be an object/));
    assert.throws(parse([{ kind: 'a', module: './a.js', extra: 1 }]), configError(/unknown key "extra"/));
    assert.throws(parse([{ kind: 'Bad Kind', module: './a.js' }]), configError(/"kind" must be lower-case/));
    assert.throws(
      parse([{ kind: 'webhook', module: './a.js' }]),
      configError(/webhook is the service's own/),
    );
    assert.throws(
      parse([{ kind: 'image', module: './a.js' }]),
      configError(/built-in image takes only "timeout"/),
    );
    assert.throws(parse([{ kind: 'csv' }]), configError(/built-in csv takes only "timeout"/));
    assert.throws(
      parse([{ kind: 'a', module: './a.js', after: 'zzz' }]),
      configError(/neither configured nor built in/),
    );
    assert.throws(parse([{ kind: 'a', module: './a.js', after: 'a' }]), configError(/loops: a → a/));
    assert.throws(
      parse([
        { kind: 'a', module: './a.js', after: 'b' },
        { kind: 'b', module: './b.js', after: 'a' },
      ]),
      configError(/loops: a → b → a/),
    );
    assert.deepEqual(
      parse([
        { kind: 'scan', module: './s.js' },
        { kind: 'image', after: 'scan' },
      ])()[1],
      {
        kind: 'image',
        after: 'scan',
      },
    );
    // A built-in's job settings, configured like a plug-in's.
    const image = parse([{ kind: 'image', timeout: '2m', maxAttempts: 2, concurrency: 1 }])()[0];
    assert.deepEqual(image, { kind: 'image', timeoutMs: 120_000, maxAttempts: 2, concurrency: 1 });
    const registry = await ProcessorRegistry.load({ processors: [image!] });
    assert.equal(registry.timeout('image'), 120_000);
    assert.equal(registry.attempts('image'), 2);
    assert.deepEqual([...registry.limits()], [['image', 1]]);
    assert.deepEqual(jobsFor('image/png', registry), ['image']);
    assert.throws(
      parse([
        { kind: 'a', module: './a.js' },
        { kind: 'a', module: './b.js' },
      ]),
      configError(/configured twice/),
    );
    assert.throws(parse([{ kind: 'a' }]), configError(/"module" must be the path/));
    assert.throws(parse([{ kind: 'a', module: 'some-package' }]), configError(/must be a path/));
    assert.throws(
      parse([{ kind: 'a', module: './a.js', match: [] }]),
      configError(/"match" must be a non-empty/),
    );
    assert.throws(parse([{ kind: 'a', module: './a.js', match: ['zip'] }]), configError(/"match"/));
    assert.throws(parse([{ kind: 'a', module: './a.js', timeout: 'soon' }]), configError(/"timeout"/));
    assert.throws(parse([{ kind: 'a', module: './a.js', maxAttempts: 0 }]), configError(/"maxAttempts"/));
    assert.throws(parse([{ kind: 'a', module: './a.js', concurrency: 1.5 }]), configError(/"concurrency"/));
    assert.throws(parse([{ kind: 'a', module: './a.js', options: 'x' }]), configError(/"options"/));
    assert.throws(
      () => loadConfig({ FILES_PROCESSORS: '[{' }, '/'),
      configError(/a JSON array of processors/),
    );
  });

  it('loads modules once at start; one that is missing, not a processor, or says no types stops the start', async () => {
    const at = (kind: string, file: string, extra = {}) =>
      parseProcessors([{ kind, module: `./${file}`, ...extra }], 'test', fixtures);
    await assert.rejects(
      ProcessorRegistry.load({ processors: at('gone', 'missing.ts') }),
      configError(/cannot load/),
    );
    await assert.rejects(
      ProcessorRegistry.load({ processors: at('fake', 'not-a-processor.ts') }),
      configError(/must export default defineProcessor/),
    );
    await assert.rejects(
      ProcessorRegistry.load({ processors: at('quiet', 'no-match.ts') }),
      configError(/says which types it runs on/),
    );
    // Its configuration's match wins over the module's own; without one, the module's.
    const registry = await ProcessorRegistry.load({
      processors: [
        ...at('quiet', 'no-match.ts', { match: ['application/zip'] }),
        ...at('count', 'plugin-modes.ts'),
      ],
    });
    assert.deepEqual(registry.kindsFor('application/zip'), ['quiet']);
    assert.deepEqual(registry.kindsFor('text/plain'), ['count']);
    // The built-ins are processors of the registry like the plug-ins, listed first.
    assert.deepEqual(registry.kindsFor('image/png'), ['image']);
    assert.deepEqual(registry.kindsFor('text/csv'), ['csv']);
    assert.equal(registry.get('image')?.builtIn, true);
    assert.equal(registry.get('count')?.builtIn, false);
    assert.deepEqual(jobsFor('image/png', registry), ['image']);
    assert.deepEqual(jobsFor('text/plain', registry), ['count']);
    assert.deepEqual(jobsFor('text/csv'), ['csv']);
  });

  it('defineProcessor refuses a definition without run, and types match by wildcards', () => {
    assert.throws(() => defineProcessor({} as never), /`run` must be a function/);
    assert.throws(() => defineProcessor({ run: () => ({}), match: ['nope'] }), /`match` must be/);
    assert.throws(() => defineProcessor({ run: () => ({}), permanent: [1] as never }), /`permanent`/);
    assert.equal(typeMatches(['image/*'], 'image/png'), true);
    assert.equal(typeMatches(['image/*'], 'text/plain'), false);
    assert.equal(typeMatches(['*/*'], 'application/zip'), true);
    assert.equal(typeMatches(['application/zip'], 'application/zip'), true);
  });
});

const remoteSkip = await serviceSkip({ redis: REDIS_URL, postgres: DATABASE_URL });
const rabbitSkip = await serviceSkip({ rabbitmq: AMQP_URL });
const BACKENDS = [
  'SQLite and disk',
  'BullMQ, PostgreSQL and S3',
  'RabbitMQ and SQLite',
  'RabbitMQ, PostgreSQL and S3',
] as const;
type Backends = (typeof BACKENDS)[number];
const skipOn = (backends: Backends) =>
  backends === 'SQLite and disk'
    ? false
    : backends === 'RabbitMQ and SQLite'
      ? rabbitSkip
      : backends === 'RabbitMQ, PostgreSQL and S3'
        ? rabbitSkip || remoteSkip
        : remoteSkip;

/** RabbitMQ delivering, PostgreSQL keeping the jobs, the records and the tables, S3 the bytes. */
async function rabbitShared(tag: string) {
  const shared = await sharedBackends(tag);
  const rabbit = rabbitBackends(tag);
  return {
    urls: { ...shared.urls, ...rabbit.urls },
    async cleanup() {
      await shared.cleanup();
      await rabbit.cleanup();
    },
  };
}

/** A service on `backends` (for the remote ones a queue, PostgreSQL schema and bucket of its own). */
async function serviceOn(backends: Backends, tag: string, overrides: Partial<FilesConfig>): Promise<Running> {
  const shared =
    backends === 'SQLite and disk'
      ? undefined
      : backends === 'RabbitMQ and SQLite'
        ? rabbitBackends(tag)
        : backends === 'RabbitMQ, PostgreSQL and S3'
          ? await rabbitShared(tag)
          : await sharedBackends(tag);
  const svc = await startService({ ...shared?.urls, pollMs: 50, ...overrides });
  return {
    ...svc,
    async stop() {
      await svc.stop();
      await shared?.cleanup();
    },
  };
}

for (const backends of BACKENDS) {
  describe(`processor plug-ins: jobs on ${backends}`, { skip: skipOn(backends) }, () => {
    let svc: Running;
    const text = 'one two three four five\nsix seven\n';
    let fileId: string;
    let jobs: Map<string, Job>;
    const marker = join(mkdtempSync(join(tmpdir(), 'files-plugin-marker-')), 'aborted');

    before(async () => {
      const mode = (kind: string, m: string, extra: Record<string, unknown> = {}) => ({
        kind,
        module: './plugin-modes.ts',
        options: { mode: m },
        ...extra,
      });
      const processors = parseProcessors(
        [
          mode('count', 'ok'),
          mode('flaky', 'flaky'),
          mode('fail', 'fail', { maxAttempts: 2 }),
          mode('permanent', 'permanent'),
          mode('slow', 'slow', { timeout: 300, maxAttempts: 1, options: { mode: 'slow', marker } }),
          mode('bad-name', 'bad-name'),
          mode('foreign-name', 'foreign-name'),
          mode('outside', 'outside'),
          mode('big-result', 'big-result'),
        ],
        'test',
        fixtures,
      );
      svc = await serviceOn(backends, 'plugins', { processors, retryDelayMs: 20, maxAttempts: 4 });
      const res = await fetch(`${svc.url}/files?name=words.txt`, { method: 'POST', body: text });
      assert.equal(res.status, 201);
      const up = (await res.json()) as { id: string; type: string; jobs: { kind: string }[] };
      fileId = up.id;
      assert.equal(up.type, 'text/plain');
      assert.deepEqual(
        up.jobs.map((j) => j.kind),
        ['count', 'flaky', 'fail', 'permanent', 'slow', 'bad-name', 'foreign-name', 'outside', 'big-result'],
      );
      // Every job ends: completed or dead.
      await until(
        async () => {
          const meta = (await (await fetch(`${svc.url}/files/${fileId}`)).json()) as { jobs: Job[] };
          jobs = new Map(meta.jobs.map((j) => [j.kind, j]));
          return meta.jobs.every((j) => j.state === 'completed' || j.state === 'dead');
        },
        60_000,
        'every plug-in job to end',
      );
    });

    after(async () => {
      await svc?.stop();
      rmSync(dirname(marker), { recursive: true, force: true });
    });

    it('runs a plug-in in the pool: its output is served under /derived/, its result kept with the job', async () => {
      const job = jobs.get('count')!;
      assert.equal(job.state, 'completed');
      assert.deepEqual(job.result, { outputs: ['count.json'], result: { words: 7, attempt: 1 } });
      const res = await fetch(`${svc.url}/files/${fileId}/derived/count.json`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/json');
      const sha = createHash('sha256').update(text).digest('hex');
      assert.deepEqual(await res.json(), { file: fileId, sha256: sha, words: 7 });
      const completed = svc.events.events.find((e) => e.type === 'job.completed' && e.data.kind === 'count');
      assert.ok(completed, 'a job.completed event for the plug-in job');
    });

    it('retries a failed attempt; the attempt number reaches the plug-in', () => {
      const job = jobs.get('flaky')!;
      assert.equal(job.state, 'completed');
      assert.equal(job.attempts, 2);
      assert.deepEqual(job.result, { outputs: ['flaky.json'], result: { words: 7, attempt: 2 } });
    });

    it("dead-letters after the plug-in's own maxAttempts, with its error code", () => {
      const job = jobs.get('fail')!;
      assert.equal(job.state, 'dead');
      assert.equal(job.maxAttempts, 2);
      assert.equal(job.attempts, 2);
      assert.equal(job.errorCode, 'ERR_TEST_FAIL');
    });

    it('dead-letters at once on a code the plug-in calls permanent', () => {
      const job = jobs.get('permanent')!;
      assert.equal(job.state, 'dead');
      assert.equal(job.attempts, 1);
      assert.equal(job.errorCode, 'ERR_TEST_PERMANENT');
      const failed = svc.events.events.find((e) => e.type === 'job.failed' && e.data.kind === 'permanent');
      assert.equal(failed?.type === 'job.failed' && failed.data.dead, true);
    });

    it("stops an attempt at the plug-in's own timeout (its signal aborted)", () => {
      const job = jobs.get('slow')!;
      assert.equal(job.state, 'dead');
      assert.equal(job.attempts, 1);
      assert.equal(job.errorCode, 'ERR_WEFT_TASK_TIMEOUT');
      assert.match(readFileSync(marker, 'utf8'), /AbortError/, 'the plug-in saw its signal aborted');
    });

    it('refuses outputs named outside its kind, outside its folder, or a result over 64 KB: dead, nothing stored', async () => {
      for (const kind of ['bad-name', 'foreign-name', 'outside', 'big-result']) {
        const job = jobs.get(kind)!;
        assert.equal(job.state, 'dead', kind);
        assert.equal(job.attempts, 1, `${kind}: a plug-in bug is not retried`);
        assert.equal(job.errorCode, 'ERR_WEFT_FILES_PROCESSOR_OUTPUT', kind);
      }
      assert.match(jobs.get('foreign-name')!.lastError ?? '', /must start with "foreign-name\."/);
      assert.match(jobs.get('outside')!.lastError ?? '', /not a file inside its outDir/);
      const meta = (await (await fetch(`${svc.url}/files/${fileId}`)).json()) as {
        derived: { name: string }[];
      };
      assert.deepEqual(meta.derived.map((d) => d.name).sort(), ['count.json', 'flaky.json']);
    });

    it("deleting the file removes the plug-ins' outputs", async () => {
      assert.equal((await fetch(`${svc.url}/files/${fileId}`, { method: 'DELETE' })).status, 204);
      assert.equal((await fetch(`${svc.url}/files/${fileId}/derived/count.json`)).status, 404);
    });
  });
}

describe('processor plug-ins: chains', () => {
  it('queues the first step of each chain at upload, each next one when the step before completes', async () => {
    const registry = await ProcessorRegistry.load({
      processors: parseProcessors(
        [
          { kind: 'first', module: './plugin-modes.ts' },
          { kind: 'second', module: './plugin-modes.ts', after: 'first' },
          { kind: 'scan', module: './plugin-modes.ts', match: ['image/*'] },
          { kind: 'image', after: 'scan' },
        ],
        'test',
        fixtures,
      ),
    });
    assert.deepEqual(jobsFor('text/plain', registry), ['first']);
    assert.deepEqual(registry.followers('first', ['first', 'second']), ['second']);
    assert.deepEqual(jobsFor('image/png', registry), ['scan']);
    assert.deepEqual(registry.followers('scan', ['image', 'scan']), ['image']);
    // A step whose step before does not apply to the file's type runs at once.
    assert.deepEqual(registry.startKinds(['second']), ['second']);
    assert.deepEqual(chainSteps(registry, 'text/plain', [{ kind: 'first', state: 'retrying' }], []), [
      { kind: 'second', after: 'first', state: 'waiting' },
    ]);
    assert.deepEqual(chainSteps(registry, 'text/plain', [{ kind: 'first', state: 'dead' }], []), [
      { kind: 'second', after: 'first', state: 'stopped' },
    ]);
    assert.deepEqual(
      chainSteps(
        registry,
        'text/plain',
        [
          { kind: 'first', state: 'completed' },
          { kind: 'second', state: 'queued' },
        ],
        [],
      ),
      [],
    );
  });
});

for (const backends of BACKENDS) {
  describe(`processor plug-ins: chains on ${backends}`, { skip: skipOn(backends) }, () => {
    let svc: Running;

    before(async () => {
      const step = (kind: string, extra: Record<string, unknown> = {}) => ({
        kind,
        module: './plugin-modes.ts',
        ...extra,
      });
      const processors = parseProcessors(
        [
          step('first'),
          step('second', { after: 'first' }),
          step('third', { after: 'second' }),
          step('broken', { options: { mode: 'permanent' } }),
          step('never', { after: 'broken' }),
          step('later', { after: 'never' }),
          step('scan', { match: ['image/*'] }),
          { kind: 'image', after: 'scan', maxAttempts: 2 },
        ],
        'test',
        fixtures,
      );
      svc = await serviceOn(backends, 'chains', { processors, retryDelayMs: 20 });
    });
    after(async () => {
      await svc?.stop();
    });

    async function settled(id: string, kinds: number) {
      let meta = { jobs: [] as Job[], chained: undefined as unknown, derived: [] as { name: string }[] };
      await until(
        async () => {
          meta = (await (await fetch(`${svc.url}/files/${id}`)).json()) as typeof meta;
          return (
            meta.jobs.length === kinds &&
            meta.jobs.every((j) => j.state === 'completed' || j.state === 'dead')
          );
        },
        60_000,
        `the ${kinds} jobs of ${id} to end`,
      );
      return meta;
    }

    it('runs a chain step by step; a dead step stops what follows it, shown on the file', async () => {
      const res = await fetch(`${svc.url}/files?name=chain.txt`, { method: 'POST', body: 'a b c\n' });
      assert.equal(res.status, 201);
      const up = (await res.json()) as { id: string; jobs: { kind: string }[] };
      assert.deepEqual(up.jobs.map((j) => j.kind).sort(), ['broken', 'first']);
      const meta = await settled(up.id, 4);
      const byKind = new Map(meta.jobs.map((j) => [j.kind, j]));
      assert.deepEqual([...byKind.keys()].sort(), ['broken', 'first', 'second', 'third']);
      for (const k of ['first', 'second', 'third']) assert.equal(byKind.get(k)!.state, 'completed', k);
      assert.equal(byKind.get('broken')!.state, 'dead');
      // Each step queued only once the one before it had finished.
      assert.ok(byKind.get('second')!.createdAt >= byKind.get('first')!.finishedAt!);
      assert.ok(byKind.get('third')!.createdAt >= byKind.get('second')!.finishedAt!);
      assert.deepEqual(meta.chained, [
        { kind: 'never', after: 'broken', state: 'stopped' },
        { kind: 'later', after: 'never', state: 'stopped' },
      ]);
      assert.deepEqual(meta.derived.map((d) => d.name).sort(), ['first.json', 'second.json', 'third.json']);
    });

    it('places a built-in processor in a chain: the image job runs after the scan', async () => {
      const res = await fetch(`${svc.url}/files?name=p.png`, {
        method: 'POST',
        body: await makeImage('png', 300, 200),
      });
      const up = (await res.json()) as { id: string; jobs: { kind: string }[] };
      assert.deepEqual(
        up.jobs.map((j) => j.kind),
        ['scan'],
      );
      const meta = await settled(up.id, 2);
      const scan = meta.jobs.find((j) => j.kind === 'scan')!;
      const image = meta.jobs.find((j) => j.kind === 'image')!;
      assert.equal(scan.state, 'completed');
      assert.equal(image.state, 'completed');
      assert.equal(image.maxAttempts, 2, "the built-in's own maxAttempts");
      assert.ok(image.createdAt >= scan.finishedAt!);
      assert.deepEqual(meta.derived.map((d) => d.name).sort(), [
        'display.webp',
        'scan.json',
        'thumbnail.webp',
      ]);
    });
  });
}

for (const backends of BACKENDS) {
  describe(`processor plug-ins: a concurrency of their own on ${backends}`, {
    skip: skipOn(backends),
  }, () => {
    let svc: Running;

    before(async () => {
      const processors = parseProcessors(
        [
          {
            kind: 'single',
            module: './plugin-modes.ts',
            concurrency: 1,
            options: { mode: 'sleep', ms: 150 },
          },
        ],
        'test',
        fixtures,
      );
      svc = await serviceOn(backends, 'single', { processors, concurrency: 3 });
    });
    after(async () => {
      await svc?.stop();
    });

    it('runs one job of a processor with concurrency 1 at a time, with three threads free', async () => {
      const ids = await Promise.all(
        [1, 2, 3].map(async (i) => {
          const res = await fetch(`${svc.url}/files?name=t${i}.txt`, { method: 'POST', body: `file ${i}\n` });
          assert.equal(res.status, 201);
          return ((await res.json()) as { id: string }).id;
        }),
      );
      const jobs: Job[] = [];
      await until(
        async () => {
          jobs.length = 0;
          for (const id of ids) {
            const meta = (await (await fetch(`${svc.url}/files/${id}`)).json()) as { jobs: Job[] };
            jobs.push(...meta.jobs);
          }
          return jobs.length === 3 && jobs.every((j) => j.state === 'completed');
        },
        60_000,
        'the three single jobs to complete',
      );
      // Their runs, in the order they started: each ended before the next began.
      const runs = jobs.map((j) => [j.startedAt!, j.finishedAt!] as const).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < runs.length; i++) {
        assert.ok(
          runs[i]![0] >= runs[i - 1]![1],
          `run ${i} started at ${runs[i]![0]}, before run ${i - 1} ended at ${runs[i - 1]![1]}`,
        );
      }
      assert.deepEqual(
        jobs.map((j) => j.attempts),
        [1, 1, 1],
      );
    });
  });
}
