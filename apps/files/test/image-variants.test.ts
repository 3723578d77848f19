// The image job's copies from the configuration (imageVariants): validated at start, made by the job, and the
// dashboard's thumbnail chosen among them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { thumbnailOf } from '../src/dashboard.ts';
import { ProcessorRegistry } from '../src/processors/registry.ts';
import { DEFAULT_VARIANTS } from '../src/processors/variants.ts';
import type { Job } from '../src/queue/types.ts';
import { makeImage, type Running, startService, until } from './helpers.ts';

describe('image copies (imageVariants)', () => {
  it('defaults to thumbnail.webp and display.webp; FILES_IMAGE_VARIANTS sets others; wrong ones stop the start', () => {
    assert.deepEqual(loadConfig({}, '/nonexistent').imageVariants, DEFAULT_VARIANTS);
    const mine = [{ name: 'small', width: 128, fit: 'inside', format: 'jpeg', quality: 70 }];
    assert.deepEqual(
      loadConfig({ FILES_IMAGE_VARIANTS: JSON.stringify(mine) }, '/nonexistent').imageVariants,
      mine,
    );
    for (const [raw, pattern] of [
      ['{', /a JSON array of image copies/],
      ['[]', /1 to 8/],
      ['[{"name":"a","width":10,"fit":"cover","format":"webp","crop":true}]', /unknown key "crop"/],
      [
        '[{"name":"a","width":10,"fit":"cover","format":"webp"},{"name":"a","width":5,"fit":"cover","format":"png"}]',
        /used twice/,
      ],
      ['[{"name":"a","width":20000,"fit":"inside","format":"webp"}]', /1\.\.16383/],
      ['[{"name":"a","width":10,"fit":"cover","format":"webp","quality":0}]', /"quality"/],
    ] as const) {
      assert.throws(
        () => loadConfig({ FILES_IMAGE_VARIANTS: raw }, '/nonexistent'),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_WEFT_FILES_CONFIG');
          assert.match(err.message, /imageVariants/);
          assert.match(err.message, pattern);
          return true;
        },
      );
    }
  });

  it('refuses a copy named as a processor plug-in, whose outputs would take the same names', () => {
    const processors = JSON.stringify([{ kind: 'thumbnail', module: './thumbs.js', match: ['image/png'] }]);
    assert.throws(
      () => loadConfig({ FILES_PROCESSORS: processors }, '/nonexistent'),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_WEFT_FILES_CONFIG');
        assert.match(err.message, /imageVariants/);
        assert.match(err.message, /the image copy "thumbnail" and the processor "thumbnail"/);
        return true;
      },
    );
    // Another name for the copy, and the same plug-in is fine.
    const variants = JSON.stringify([{ name: 'thumb', width: 64, fit: 'cover', format: 'webp' }]);
    const config = loadConfig(
      { FILES_PROCESSORS: processors, FILES_IMAGE_VARIANTS: variants },
      '/nonexistent',
    );
    assert.deepEqual(
      config.processors.map((p) => p.kind),
      ['thumbnail'],
    );
  });

  it('refuses the same clash in a configuration made by hand, before importing any plug-in', async () => {
    const processors = [{ kind: 'display', module: '/nonexistent/display.js', match: ['image/png'] }];
    await assert.rejects(ProcessorRegistry.load({ processors }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_WEFT_FILES_CONFIG');
      // The default copies are checked when the configuration names none; the module is never imported.
      assert.match(err.message, /the image copy "display" and the processor "display"/);
      assert.doesNotMatch(err.message, /cannot load/);
      return true;
    });
    await assert.rejects(
      ProcessorRegistry.load({ processors, imageVariants: [{ ...DEFAULT_VARIANTS[0]!, name: 'display' }] }),
      { code: 'ERR_WEFT_FILES_CONFIG', message: /the image copy "display"/ },
    );
    // Other names: the check passes, and the load goes on to import the module (which is not there).
    await assert.rejects(ProcessorRegistry.load({ processors, imageVariants: [DEFAULT_VARIANTS[0]!] }), {
      code: 'ERR_WEFT_FILES_CONFIG',
      message: /cannot load \/nonexistent\/display\.js/,
    });
  });

  it('the dashboard shows a file by the copy named thumbnail, else the first cover copy, else the first', () => {
    assert.equal(thumbnailOf(), 'thumbnail.webp');
    assert.equal(
      thumbnailOf([
        { name: 'big', width: 900, fit: 'inside', format: 'jpeg' },
        { name: 'tile', width: 90, height: 90, fit: 'cover', format: 'png' },
      ]),
      'tile.png',
    );
    assert.equal(thumbnailOf([{ name: 'only', width: 900, fit: 'inside', format: 'avif' }]), 'only.avif');
  });

  describe('a service with its own copies', () => {
    let svc: Running;
    before(async () => {
      svc = await startService({
        imageVariants: [
          { name: 'tile', width: 100, height: 100, fit: 'cover', format: 'png' },
          { name: 'web', width: 400, fit: 'inside', format: 'jpeg', quality: 75 },
        ],
      });
    });
    after(() => svc?.stop());

    it('makes and serves exactly those copies of an uploaded image', async () => {
      const res = await fetch(`${svc.url}/files?name=p.jpg`, {
        method: 'POST',
        body: await makeImage('jpeg', 800, 600),
      });
      assert.equal(res.status, 201);
      const { id } = (await res.json()) as { id: string };
      let meta: { jobs: Job[]; derived: { name: string; type: string; width: number; height: number }[] } = {
        jobs: [],
        derived: [],
      };
      await until(
        async () => {
          meta = (await (await fetch(`${svc.url}/files/${id}`)).json()) as typeof meta;
          return meta.jobs[0]?.state === 'completed' || meta.jobs[0]?.state === 'dead';
        },
        30_000,
        'the image job to end',
      );
      assert.equal(meta.jobs[0]!.state, 'completed');
      assert.deepEqual(
        meta.derived.map(({ name, type, width, height }) => ({ name, type, width, height })),
        [
          { name: 'tile.png', type: 'image/png', width: 100, height: 100 },
          { name: 'web.jpeg', type: 'image/jpeg', width: 400, height: 300 },
        ],
      );
      const tile = await fetch(`${svc.url}/files/${id}/derived/tile.png`);
      assert.equal(tile.status, 200);
      assert.equal(tile.headers.get('content-type'), 'image/png');
    });
  });
});
