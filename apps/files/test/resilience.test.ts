// The policy wrapper on its own (issue 16 item 1): a fake adapter and a mocked clock (node:test's Date), so the
// breaker's half-open delay passes without waiting; the deadlines are real but a few ms.
import assert from 'node:assert/strict';
import { afterEach, describe, it, mock } from 'node:test';
import { ConstantBackoff } from 'cockatiel';
import { FilesError } from '../src/errors.ts';
import { BackendGuard, type GuardOptions, resilient } from '../src/resilience.ts';

/** An adapter whose calls do what the test says next, and count themselves. */
class Fake {
  readonly #name = 'fake'; // a #private field: reachable only when the proxy binds methods to the adapter
  calls = 0;
  next: () => Promise<string> = async () => 'ok';
  read(): Promise<string> {
    this.calls++;
    return this.next();
  }
  write(): Promise<string> {
    this.calls++;
    return this.next();
  }
  name(): string {
    return this.#name;
  }
}

const refused = () =>
  Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
const never = () => new Promise<string>(() => {});

function setup(options: Partial<GuardOptions> = {}) {
  const guard = new BackendGuard('database', {
    timeoutMs: 50,
    threshold: 3,
    halfOpenAfterMs: 1_000,
    retries: 2,
    backoff: new ConstantBackoff(0),
    ...options,
  });
  const fake = new Fake();
  const port = resilient(fake, guard, { read: 'read', write: 'write' });
  return { guard, fake, port };
}

const unavailable = { name: 'FilesError', code: 'ERR_WEFT_FILES_DATABASE_UNAVAILABLE', statusCode: 503 };

describe('BackendGuard and resilient()', () => {
  afterEach(() => mock.timers.reset());

  it('fails a call that does not answer by its deadline with the backend’s 503 error', async () => {
    const { guard, fake, port } = setup({ timeoutMs: 30 });
    fake.next = never;
    const t = performance.now();
    await assert.rejects(port.write(), { ...unavailable, message: /did not answer write within 30 ms/ });
    assert.ok(performance.now() - t < 1_000);
    // A read is not retried past its deadline either: the deadline covers the whole call.
    fake.calls = 0;
    await assert.rejects(port.read(), unavailable);
    assert.equal(fake.calls, 1);
    guard.close();
  });

  it('opens the breaker after `threshold` failures: later calls fail at once without reaching the backend', async () => {
    const { guard, fake, port } = setup();
    fake.next = refused;
    for (let i = 0; i < 3; i++)
      await assert.rejects(port.write(), { ...unavailable, message: /ECONNREFUSED/ });
    assert.equal(guard.state, 'open');
    assert.equal(guard.up, false);
    assert.equal(guard.opens, 1);
    const before = fake.calls;
    await assert.rejects(port.write(), { ...unavailable, message: /circuit open/ });
    await assert.rejects(port.read(), unavailable);
    assert.equal(fake.calls, before, 'an open breaker does not call the backend');
    guard.close();
  });

  it('lets one probe through after halfOpenAfter; its success closes the breaker, its failure opens it again', async () => {
    mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const { guard, fake, port } = setup({ threshold: 1 });
    fake.next = refused;
    await assert.rejects(port.write(), unavailable);
    assert.equal(guard.state, 'open');
    mock.timers.tick(999);
    await assert.rejects(port.write(), { message: /circuit open/ });
    mock.timers.tick(1);
    await assert.rejects(port.write(), { message: /ECONNREFUSED/ }); // the probe ran, and failed
    assert.equal(guard.state, 'open');
    assert.equal(guard.halfOpens, 1);
    assert.equal(guard.opens, 2);
    mock.timers.tick(1_000);
    fake.next = async () => 'back';
    assert.equal(await port.write(), 'back');
    assert.equal(guard.state, 'closed');
    assert.equal(guard.up, true);
    assert.equal(guard.halfOpens, 2);
    guard.close();
  });

  it('refuses a long call at once while a half-open probe runs, instead of holding it behind the probe', async () => {
    // cockatiel holds calls behind a half-open probe; a call under a deadline is bounded by it, a long call (an
    // upload's body to S3) was not: it waited as long as the probe, which in an S3 partition is the partition.
    mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const guard = new BackendGuard('storage', { timeoutMs: 50, threshold: 1, halfOpenAfterMs: 1_000 });
    const fake = new Fake();
    const port = resilient(fake, guard, { read: 'long-read', write: 'long-write' });
    fake.next = refused;
    await assert.rejects(port.write(), { code: 'ERR_WEFT_FILES_STORAGE_UNAVAILABLE' });
    mock.timers.tick(1_000);
    let finish!: (v: string) => void;
    fake.next = () =>
      new Promise<string>((resolve) => {
        finish = resolve;
      });
    const probe = port.write(); // the half-open probe, hanging
    assert.equal(guard.state, 'half-open');
    await new Promise((r) => setImmediate(r)); // the probe reached the backend
    assert.equal(typeof finish, 'function');
    fake.calls = 0;
    await assert.rejects(port.write(), { code: 'ERR_WEFT_FILES_STORAGE_UNAVAILABLE', message: /not tried/ });
    await assert.rejects(port.read(), { code: 'ERR_WEFT_FILES_STORAGE_UNAVAILABLE', message: /not tried/ });
    assert.equal(fake.calls, 0, 'refused without reaching the backend');
    finish('back');
    assert.equal(await probe, 'back');
    assert.equal(guard.state, 'closed');
    fake.next = async () => 'ok';
    assert.equal(await port.write(), 'ok');
    guard.close();
  });

  it('retries reads (safe to repeat) with backoff, never writes', async () => {
    const { guard, fake, port } = setup({ threshold: 10 });
    let failures = 2;
    fake.next = () => (failures-- > 0 ? refused() : Promise.resolve('third time'));
    assert.equal(await port.read(), 'third time');
    assert.equal(fake.calls, 3);
    fake.calls = 0;
    failures = 1;
    await assert.rejects(port.write(), unavailable);
    assert.equal(fake.calls, 1, 'a write is tried once');
    // Retries are bounded: 1 + 2 tries, then the error.
    fake.calls = 0;
    fake.next = refused;
    await assert.rejects(port.read(), unavailable);
    assert.equal(fake.calls, 3);
    guard.close();
  });

  it('passes the service’s own answers through and does not count them against the backend', async () => {
    const { guard, fake, port } = setup({ threshold: 1 });
    fake.next = () => Promise.reject(new FilesError('ERR_WEFT_FILES_NOT_FOUND', 'No file x'));
    await assert.rejects(port.read(), { code: 'ERR_WEFT_FILES_NOT_FOUND' });
    await assert.rejects(port.write(), { code: 'ERR_WEFT_FILES_NOT_FOUND' });
    assert.equal(guard.state, 'closed');
    assert.equal(fake.calls, 2, 'an answer is not retried');
    // The codes the adapters used for an outage before the guards count, and are renamed.
    fake.next = () => Promise.reject(new FilesError('ERR_WEFT_FILES_DATABASE', 'gone'));
    await assert.rejects(port.write(), unavailable);
    assert.equal(guard.state, 'open');
    guard.close();
  });

  it('leaves other members alone (synchronous methods keep the adapter’s private fields)', () => {
    const { guard, port } = setup();
    assert.equal(port.name(), 'fake');
    assert.equal(port.calls, 0);
    guard.close();
  });

  it('probes an open breaker in the background, so the backend’s return closes it without traffic', async () => {
    mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const { guard, fake, port } = setup({ threshold: 1 });
    fake.next = refused;
    await assert.rejects(port.write(), unavailable);
    const closed = new Promise<void>((resolve) => {
      guard.onStateChange((s) => s === 'closed' && resolve());
    });
    fake.next = async () => 'ok';
    guard.probe(() => fake.read(), 5);
    mock.timers.tick(1_000);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      closed,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('the probe did not close the breaker within 2 s')), 2_000);
      }),
    ]);
    clearTimeout(timer);
    assert.equal(guard.state, 'closed');
    // The readiness check fails at once while open, and asks the backend otherwise.
    await guard.check(() => fake.read())();
    guard.close();
  });
});
