/**
 * The `files` benchmark area: `apps/files` under `weft start --workers 2`, on loopback. (1) 1 GB of opaque uploads,
 * 2 at a time, against a minimal node:http server that pipes to a file (plain, and with SHA-256 + fsync), with the
 * peak RSS of every process; (2) 40 photos of 3000×2000 through the image jobs against bare sharp doing the same
 * work in one process, 2 at a time; (3) a 1,000,000-row CSV ingested into SQLite; (4) one 12 MP photo from upload
 * to servable thumbnail, against bare sharp. Every subject runs for the whole area; rounds alternate them.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBlobs, makeCsv, makeJpeg, makeJpegs } from './files-data.ts';
import {
  allocators,
  bareSharp,
  clearDir,
  durableOutputsMs,
  measureCsv,
  measureMemory,
  measureServiceE2e,
  measureServiceJobsOnly,
  measureServiceThumbs,
  measureSmallUploads,
  measureUpload,
  SIZES,
  settle,
} from './files-measure.ts';
import { type E2eSample, report, type ThumbSample } from './files-report.ts';
import { agent, type Group, startFixture, startService } from './files-service.ts';
import { type AreaOptions, alternate, within } from './lib/harness.ts';
import { fmt } from './lib/stats.ts';

export async function run({ rounds, log }: AreaOptions): Promise<string> {
  const scratch = mkdtempSync(join(tmpdir(), 'weft-bench-files-in-'));
  const groups: Group[] = [];
  try {
    const t = performance.now();
    log('  generating inputs');
    const dir = (name: string) => {
      const path = join(scratch, name);
      mkdirSync(path);
      return path;
    };
    const blobs = await makeBlobs(dir('blobs'), SIZES.blobs, SIZES.blobBytes);
    const photos = await makeJpegs(dir('photos'), SIZES.photos, ...SIZES.photo);
    // Seed 1004: the strongest noise of the generator, so the file is as large as a phone's 12 MP photo.
    const big = await makeJpeg(join(scratch, 'big.jpg'), ...SIZES.big, 1_004);
    const csv = await makeCsv(join(scratch, 'data.csv'), SIZES.csvRows);
    log(`  inputs ready in ${fmt((performance.now() - t) / 1000)} s`);

    log('  starting the service and the baselines');
    const service = await startService();
    groups.push(service);
    const sinks = {
      plain: dir('sink-plain'),
      durable: dir('sink-durable'),
    };
    const plain = await startFixture('files-sink.ts', { SINK_DIR: sinks.plain, SINK_MODE: 'plain' });
    groups.push(plain);
    const durable = await startFixture('files-sink.ts', { SINK_DIR: sinks.durable, SINK_MODE: 'durable' });
    groups.push(durable);

    log('  (1) upload 1 GB, 2 at a time');
    const uploadSubjects = [
      { name: 'node:http → file', target: plain, kind: 'sink' as const, dir: sinks.plain },
      {
        name: 'node:http → file + SHA-256 + fsync',
        target: durable,
        kind: 'sink' as const,
        dir: sinks.durable,
      },
      { name: 'weft files (2 workers)', target: service, kind: 'service' as const, dir: '' },
    ];
    const uploads = await alternate(
      uploadSubjects,
      rounds,
      async (u) => {
        const sample = await within(measureUpload(u.target, u.kind, blobs), 600_000, `${u.name} upload`);
        log(`    ${u.name}: ${fmt(sample.mbps)} MB/s, ${fmt(sample.cpuPerGb)} CPU s per GB`);
        if (u.kind === 'sink') await clearDir(u.dir);
        await settle();
        return sample;
      },
      log,
    );

    log(`  (2) ${SIZES.photos} photos: the service against bare sharp`);
    const paths = photos.map((p) => p.path);
    const thumbs = await alternate(
      [{ name: 'weft files (2 workers)' }, { name: 'weft files, jobs only' }, { name: 'bare sharp' }],
      rounds,
      async (subject): Promise<ThumbSample> => {
        let sample: ThumbSample;
        if (subject.name === 'weft files, jobs only') {
          sample = await within(measureServiceJobsOnly(photos, scratch), 600_000, 'service jobs only');
        } else if (subject.name === 'bare sharp') {
          const r = await bareSharp(paths, SIZES.concurrency, scratch);
          const meanMs = r.images.reduce((a, b) => a + b.ms, 0) / r.images.length;
          sample = {
            perSecond: paths.length / (r.totalMs / 1000),
            meanMs,
            cpuMsPerImage: r.cpuMs / paths.length,
            libvipsMsPerImage: r.libvipsCpuMs / paths.length,
            peaks: [],
            bare: r,
          };
        } else
          sample = await within(measureServiceThumbs(service, photos), 600_000, 'service thumbnails').catch(
            (err: unknown) => {
              // What the service said about it (a worker that exited, a refused request): its warnings and errors.
              log(serviceComplaints(service));
              throw err;
            },
          );
        log(
          `    ${subject.name}: ${fmt(sample.perSecond)} images/s, ${fmt(sample.meanMs)} ms and ${fmt(sample.cpuMsPerImage)} CPU ms per image`,
        );
        return sample;
      },
      log,
    );

    const durableMs = await durableOutputsMs(scratch);
    log(`  durable writes of two outputs: ${fmt(durableMs)} ms per image`);

    log(`  (3) a ${SIZES.csvRows.toLocaleString('en-US')}-row CSV`);
    const csvs = await alternate(
      [{ name: 'weft files (2 workers)' }],
      rounds,
      async () => {
        const sample = await within(measureCsv(service, csv), 900_000, 'CSV ingest');
        log(`    ${fmt(sample.rows / sample.seconds)} rows/s, upload ${fmt(sample.uploadSeconds)} s`);
        return sample;
      },
      log,
    );

    log('  (4) one 12 MP photo: upload to servable thumbnail');
    const e2e = await alternate(
      [{ name: 'weft files (2 workers)' }, { name: 'bare sharp' }],
      rounds,
      async (subject): Promise<E2eSample> => {
        let sample: E2eSample;
        if (subject.name === 'bare sharp') {
          const r = await bareSharp(Array(SIZES.e2ePerRound).fill(big.path), 1, scratch);
          sample = { ms: r.images.map((i) => i.ms), thumbnailMs: r.images.map((i) => i.thumbnailMs) };
        } else sample = await within(measureServiceE2e(service, big), 600_000, 'service end-to-end');
        log(`    ${subject.name}: ${sample.ms.map((m) => fmt(m)).join(', ')} ms`);
        return sample;
      },
      log,
    );

    log(`  (5) memory: idle, ${SIZES.memoryPhotos} photos, idle again`);
    const memory = await alternate(
      allocators(),
      rounds,
      async (a) => {
        const sample = await within(
          measureMemory(photos.slice(0, SIZES.memoryPhotos), a.env),
          600_000,
          `memory, ${a.name}`,
        );
        const max = (v: { rss: number }[]) => `${fmt(Math.max(...v.map((p) => p.rss)) / 1e6)} MB`;
        log(
          `    ${a.name}: idle ${max(sample.idle)}, peak ${max(sample.peak)}, done ${max(sample.done)}, later ${max(sample.later)}`,
        );
        return sample;
      },
      log,
    );

    log(
      `  (6) ${SIZES.small.count} uploads of ${SIZES.small.bytes} bytes, ${SIZES.small.concurrency} at a time`,
    );
    const single = await startService({}, 1);
    groups.push(single);
    const smallSubjects = [
      {
        name: 'node:http → file + SHA-256 + fsync (1 process)',
        url: durable.url,
        pgid: durable.child.pid!,
        dir: sinks.durable,
      },
      { name: 'weft files (1 worker)', url: single.url, pgid: single.child.pid!, dir: '' },
    ];
    // Both servers warmed the same way first: the service starts fresh here, the floor has served since (1).
    for (let i = 0; i < SIZES.small.warmup; i++) {
      for (const subject of smallSubjects) {
        await within(measureSmallUploads(subject.url, subject.pgid), 300_000, `${subject.name} warm-up`);
        if (subject.dir) await clearDir(subject.dir);
      }
    }
    await settle();
    // Several alternating batches a round: on this shared machine one batch's rate varies by up to 2x from the next.
    const small = await alternate(
      smallSubjects,
      rounds * SIZES.small.perRound,
      async (subject) => {
        const sample = await within(
          measureSmallUploads(subject.url, subject.pgid),
          300_000,
          `${subject.name} small uploads`,
        );
        log(
          `    ${subject.name}: ${fmt(sample.perSecond)} uploads/s, p50 ${fmt(sample.p50Ms)} ms, server CPU ${fmt(sample.serverCpuMs)} ms per upload`,
        );
        if (subject.dir) await clearDir(subject.dir);
        await settle();
        return sample;
      },
      log,
    );

    const inputs = { blobs, photos, big, csv };
    return report({
      rounds,
      memoryPhotos: SIZES.memoryPhotos,
      memoryIdleSeconds: SIZES.memoryIdleSeconds,
      memory,
      small,
      smallSizes: SIZES.small,
      inputs,
      uploads,
      thumbs,
      durableMs,
      csvs,
      e2e,
    });
  } finally {
    for (const g of groups) await g.stop();
    agent.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * The service's warning and error lines (levels 40 and up: the workers' pino lines and the supervisor's own) from the
 * tail of its output, for a failed sample.
 */
function serviceComplaints(service: Group): string {
  const lines = service
    .output()
    .split('\n')
    .filter((l) => /"level":(4|5|6)0/.test(l));
  return lines.length > 0
    ? `    the service's warnings and errors before it:\n${lines
        .slice(-20)
        .map((l) => `      ${l.slice(0, 400)}`)
        .join('\n')}`
    : '    the service logged no warning or error';
}
