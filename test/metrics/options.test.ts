import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Supervisor } from '../../src/cluster/index.ts';
import { createMetrics, type Metrics, serveMetrics } from '../../src/metrics/index.ts';
import { invalidOption, track } from '../helpers.ts';

const exec = new URL('../cluster/fixtures/app.ts', import.meta.url);

describe('metrics options', () => {
  it('createMetrics rejects each bad option with ERR_WEFT_INVALID_OPTION naming it', () => {
    const bad: [string, unknown][] = [
      ['options', null],
      ['options', 'weft_'],
      ['prefix', 'weft-'],
      ['prefix', '9lives_'],
      ['prefix', 3],
      ['collectProcess', 'yes'],
      ['interval', 0],
      ['interval', 1.5],
      ['interval', '1s'],
      ['interval', 2 ** 31],
      ['eventLoopResolution', 0],
      ['eventLoopResolution', 1_000],
      ['gcBuckets', []],
      ['gcBuckets', [0.1, 0.01]],
      ['gcBuckets', [0, 1]],
      ['gcBuckets', [1, Number.POSITIVE_INFINITY]],
      ['gcBuckets', 'fast'],
      ['registry', {}],
      ['registry', 'global'],
    ];
    for (const [option, v] of bad) {
      const options = option === 'options' ? v : { [option]: v };
      assert.throws(() => createMetrics(options as never), invalidOption(option), `${option}: ${String(v)}`);
    }
  });

  it('add* reject a wrong source, a bad or duplicate name, and non-object options', () => {
    const m: Metrics = createMetrics({ collectProcess: false });
    track({ destroy: async () => m.close() });
    const meter = { name: 'm', snapshot: () => ({}) as never };
    assert.throws(() => m.addPool({} as never), invalidOption('pool'));
    assert.throws(() => m.addPool(null as never), invalidOption('pool'));
    assert.throws(() => m.addLifecycle({} as never), invalidOption('lifecycle'));
    assert.throws(() => m.addShedder({ shed: 1 } as never), invalidOption('shedder'));
    assert.throws(() => m.addMeter({ name: 'x' } as never), invalidOption('meter'));
    assert.throws(() => m.addMeter(meter, { name: '' }), invalidOption('name'));
    assert.throws(() => m.addMeter(meter, { name: 'a\nb' }), invalidOption('name'));
    assert.throws(() => m.addMeter(meter, { name: 7 as never }), invalidOption('name'));
    assert.throws(() => m.addMeter(meter, null as never), invalidOption('options'));
    m.addMeter(meter);
    assert.throws(() => m.addMeter(meter), invalidOption('name'), 'a second meter named m');
    m.addLifecycle({ state: 'ready' });
    assert.throws(() => m.addLifecycle({ state: 'ready' }), invalidOption('name'), 'a second "default"');
  });

  it('serveMetrics rejects a bad source, port or host', async () => {
    const source = { metrics: async () => '', snapshot: () => ({}) };
    await assert.rejects(serveMetrics({} as never, { port: 0 }), invalidOption('source'));
    await assert.rejects(serveMetrics(source, null as never), invalidOption('options'));
    for (const port of [-1, 65_536, 1.5, '9464', undefined])
      await assert.rejects(serveMetrics(source, { port } as never), invalidOption('port'), String(port));
    await assert.rejects(serveMetrics(source, { port: 0, host: '' }), invalidOption('host'));
  });

  it('supervise rejects a bad metricsPort, metricsHost or metricsTimeout', () => {
    for (const [option, v] of [
      ['metricsPort', -1],
      ['metricsPort', 70_000],
      ['metricsPort', '9464'],
      ['metricsPort', 1.5],
      ['metricsHost', ''],
      ['metricsHost', 127],
      ['metricsTimeout', 0],
      ['metricsTimeout', -5],
      ['metricsTimeout', 'fast'],
    ] as const) {
      assert.throws(
        () => new Supervisor({ exec, [option]: v } as never),
        invalidOption(option),
        `${option}: ${v}`,
      );
    }
    const ok = new Supervisor({ exec, metricsPort: 0 });
    assert.equal(ok.options.metricsHost, '127.0.0.1');
    assert.equal(ok.options.metricsTimeout, 1_000);
  });
});
