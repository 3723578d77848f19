import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Backoff, CrashWindow } from '../../src/cluster/index.ts';

describe('restart backoff', () => {
  it('doubles from 100 ms to a 30 s ceiling, with jitter on top, and resets after a stable run', () => {
    const none = new Backoff({ random: () => 0 });
    const delays = Array.from({ length: 12 }, () => none.next());
    assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]);
    none.reset();
    assert.equal(none.next(), 100);
    const full = new Backoff({ random: () => 0.999 });
    assert.equal(full.next(), 120, 'up to 20 % jitter');
    assert.equal(new Backoff({ random: () => 0.999, max: 1000, min: 1000 }).next(), 1000, 'never above max');
  });

  it('a crash window reports a loop past max crashes within the window only', () => {
    const w = new CrashWindow(2, 1_000);
    assert.equal(w.record(0), false);
    assert.equal(w.record(100), false);
    assert.equal(w.record(200), true, 'third crash within 1 s');
    const slow = new CrashWindow(2, 1_000);
    assert.equal(slow.record(0), false);
    assert.equal(slow.record(900), false);
    assert.equal(slow.record(1_950), false, 'the first crash left the window');
  });
});
