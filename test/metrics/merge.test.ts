import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  clusterTotalName,
  type MetricFamily,
  MetricsMerger,
  renderFamilies,
} from '../../src/metrics/index.ts';
import { find, parseExposition, value } from './helpers.ts';

/** A worker's families: a counter of tasks by outcome, a gauge and a histogram. */
function families(completed: number, queued = 0): MetricFamily[] {
  return [
    {
      name: 'weft_pool_tasks_total',
      help: 'Settled tasks',
      type: 'counter',
      values: [
        { value: completed, labels: { pool: 'images', outcome: 'completed' } },
        { value: 1, labels: { pool: 'images', outcome: 'failed' } },
      ],
    },
    {
      name: 'weft_pool_queued_tasks',
      help: 'Queued',
      type: 'gauge',
      values: [{ value: queued, labels: { pool: 'images' } }],
    },
    {
      name: 'weft_gc_pause_seconds',
      help: 'GC',
      type: 'histogram',
      values: [
        { value: 2, labels: { kind: 'minor', le: 0.01 }, metricName: 'weft_gc_pause_seconds_bucket' },
        { value: 2, labels: { kind: 'minor', le: '+Inf' }, metricName: 'weft_gc_pause_seconds_bucket' },
        { value: 0.004, labels: { kind: 'minor' }, metricName: 'weft_gc_pause_seconds_sum' },
        { value: 2, labels: { kind: 'minor' }, metricName: 'weft_gc_pause_seconds_count' },
      ],
    },
  ];
}

const completed = { pool: 'images', outcome: 'completed' };

describe('merging workers’ metrics', () => {
  it('keeps every worker’s series with worker and pid labels, and sums counters into _cluster_total', async () => {
    const merger = new MetricsMerger();
    const merged = merger.merge({
      workers: [
        { worker: 0, pid: 100, families: families(5, 2) },
        { worker: 1, pid: 101, families: families(7, 3) },
      ],
      alive: new Set([100, 101]),
      own: [
        { name: 'weft_cluster_workers', help: 'Slots', type: 'gauge', values: [{ value: 2, labels: {} }] },
      ],
    });
    const e = parseExposition(await renderFamilies(merged));
    assert.equal(value(e, 'weft_pool_tasks_total', { ...completed, worker: '0', pid: '100' }), 5);
    assert.equal(value(e, 'weft_pool_tasks_total', { ...completed, worker: '1', pid: '101' }), 7);
    assert.equal(value(e, 'weft_pool_queued_tasks', { worker: '1', pid: '101' }), 3);
    assert.equal(value(e, 'weft_gc_pause_seconds_bucket', { worker: '0', le: '+Inf' }), 2);
    assert.equal(value(e, 'weft_pool_tasks_cluster_total', completed), 12);
    assert.equal(value(e, 'weft_pool_tasks_cluster_total', { pool: 'images', outcome: 'failed' }), 2);
    assert.deepEqual(
      find(e, 'weft_pool_tasks_cluster_total', completed)[0]?.labels,
      completed,
      'no worker/pid',
    );
    assert.equal(e.types.get('weft_pool_tasks_cluster_total'), 'counter');
    assert.equal(e.types.get('weft_gc_pause_seconds'), 'histogram');
    assert.equal(find(e, 'weft_pool_queued_tasks_cluster_total').length, 0, 'gauges are not summed');
    assert.equal(find(e, 'weft_gc_pause_seconds_cluster_total').length, 0, 'histograms are not summed');
    assert.equal(value(e, 'weft_cluster_workers'), 2, 'own families as they are');
    assert.deepEqual(
      merger.totals().find((t) => t.labels.outcome === 'completed'),
      {
        name: 'weft_pool_tasks_cluster_total',
        labels: completed,
        value: 12,
      },
    );
  });

  it('totals stay monotonic: a restarted worker’s old counts are carried over, a late worker keeps its last', async () => {
    const merger = new MetricsMerger();
    const total = async (input: Parameters<MetricsMerger['merge']>[0]) =>
      value(
        parseExposition(await renderFamilies(merger.merge(input))),
        'weft_pool_tasks_cluster_total',
        completed,
      );
    assert.equal(
      await total({
        workers: [
          { worker: 0, pid: 100, families: families(5) },
          { worker: 1, pid: 101, families: families(7) },
        ],
        alive: new Set([100, 101]),
      }),
      12,
    );
    // Worker 1 did not answer this time but is alive: its last 7 still count.
    assert.equal(
      await total({ workers: [{ worker: 0, pid: 100, families: families(6) }], alive: new Set([100, 101]) }),
      13,
    );
    // Worker 1 crashed and slot 1 has a new process (pid 102) starting from 0.
    assert.equal(
      await total({
        workers: [
          { worker: 0, pid: 100, families: families(6) },
          { worker: 1, pid: 102, families: families(1) },
        ],
        alive: new Set([100, 102]),
      }),
      14,
    );
    // A counter that goes back inside one process was reset: what it had counted is kept.
    assert.equal(
      await total({
        workers: [
          { worker: 0, pid: 100, families: families(2) },
          { worker: 1, pid: 102, families: families(1) },
        ],
        alive: new Set([100, 102]),
      }),
      16,
    );
  });

  it('skips malformed families and samples from a worker instead of failing the scrape', async () => {
    const merger = new MetricsMerger();
    const bad = [
      null,
      { name: 'bad name', help: '', type: 'gauge', values: [] },
      { name: 'no_values', help: '', type: 'gauge' },
      {
        name: 'mixed',
        help: 'Mixed',
        type: 'weird',
        values: [
          { value: 1, labels: { ok: 'yes' } },
          { value: 2, labels: { 'bad-label': 'x' } },
          { value: 3, labels: { nested: { a: 1 } } },
          { value: null, labels: { was: 'NaN' } },
          'not a sample',
        ],
      },
    ] as unknown as MetricFamily[];
    const e = parseExposition(
      await renderFamilies(
        merger.merge({ workers: [{ worker: 0, pid: 1, families: bad }], alive: new Set([1]) }),
      ),
    );
    assert.deepEqual(
      e.samples.map((s) => [s.name, s.labels.ok, s.value]),
      [['mixed', 'yes', 1]],
    );
    assert.equal(e.types.get('mixed'), 'untyped');
  });

  it('names totals after the counter', () => {
    assert.equal(clusterTotalName('weft_pool_tasks_total'), 'weft_pool_tasks_cluster_total');
    assert.equal(clusterTotalName('app_requests'), 'app_requests_cluster_total');
  });
});
