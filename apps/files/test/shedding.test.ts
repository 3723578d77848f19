// Load shedding of uploads: 503 with Retry-After while more jobs wait than maxQueued (or the event loop is late),
// uploads accepted again once the queue drains; reads are never shed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LoadShedder } from 'weftjs/lifecycle';
import { silentLogger } from '../src/logger.ts';
import { uploadShedder } from '../src/shedding.ts';
import { type Running, startService } from './helpers.ts';

describe('load shedding', () => {
  let s: Running;
  let shedder: LoadShedder;
  let guard: ReturnType<LoadShedder['handler']> | undefined;
  const idle = { eventLoopDelayP99: 0, eventLoopUtilization: 0, heapUsedRatio: 0, gauges: {} };
  let sample = idle;
  before(async () => {
    s = await startService(
      { maxQueued: 2 },
      { runJobs: false, http: { shed: (q, r, done) => (guard ? guard(q, r, done) : done()) } },
    );
    shedder = uploadShedder({ maxQueued: 2, maxEventLoopDelay: 500 }, s.queued, silentLogger, {
      timer: false,
      sampler: () => sample,
    });
    guard = shedder.handler();
  });
  after(async () => {
    shedder.close();
    await s.stop();
  });

  const upload = () => fetch(`${s.url}/files?name=a.csv`, { method: 'POST', body: 'a,b\n1,2\n' });

  it('answers 503 with Retry-After while the queue is over maxQueued, and recovers when it drains', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await upload()).status, 201);
    shedder.sample();
    assert.equal(shedder.overloaded, true);
    const shed = await upload();
    assert.equal(shed.status, 503);
    assert.equal(shed.headers.get('retry-after'), '5');
    assert.deepEqual(((await shed.json()) as { reasons: string[] }).reasons, ['gauge queuedJobs 3 > 2']);
    assert.equal((await fetch(`${s.url}/files`)).status, 200, 'reads are not shed');

    // The queue drains: two samples below the limit with hysteresis end the shedding.
    for (const job of await s.queue.claim('test', 10)) await s.queue.complete(job, 'test', null);
    shedder.sample();
    shedder.sample();
    assert.equal(shedder.overloaded, false);
    assert.equal((await upload()).status, 201);
    assert.equal(shedder.shed, 1);
  });

  it('sheds on a late event loop too', async () => {
    sample = { ...idle, eventLoopDelayP99: 900 };
    shedder.sample();
    const res = await upload();
    assert.equal(res.status, 503);
    assert.match(((await res.json()) as { reasons: string[] }).reasons[0]!, /eventLoopDelay 900ms > 500ms/);
    sample = idle;
  });
});
