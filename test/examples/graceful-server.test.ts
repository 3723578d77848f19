import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { within } from '../helpers.ts';

const main = fileURLToPath(new URL('../../examples/graceful-server/main.ts', import.meta.url));
/** What each client request asks the server to wait (`?ms=`): the longest request in flight at SIGTERM. */
const HANDLER_MS = 100;
/** The example's `idleGrace`. */
const IDLE_GRACE = 200;
/** SIGTERM to exit, at most: the longest in-flight request, idleGrace, and a generous margin (pool threads ending). */
const EXIT_WITHIN = HANDLER_MS + IDLE_GRACE + 1_500;
const CLIENTS = 20;

const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {} // already gone
  }
});

type Line = Record<string, unknown>;

/** The example as a child process: its stdout as JSON lines, its stderr, and its exit. */
function startExample() {
  const child = spawn(process.execPath, ['--conditions=weft-source', main], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const lines: Line[] = [];
  let stderr = '';
  const waiters = new Set<{ test: (l: Line) => boolean; resolve: (l: Line) => void }>();
  const exit = new Promise<{ code: number | null; signal: string | null; at: number }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() }));
  });
  let buffered = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        line = { raw: text };
      }
      lines.push(line);
      for (const w of waiters) if (w.test(line)) w.resolve(line);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const output = () => `stdout:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr}`;
  /** The first line (already seen or to come) that passes `test`; fails if the child exits first, or after `ms`. */
  const line = (test: (l: Line) => boolean, ms: number, what: string): Promise<Line> => {
    const seen = lines.find(test);
    if (seen) return Promise.resolve(seen);
    let waiter: { test: (l: Line) => boolean; resolve: (l: Line) => void } | undefined;
    const found = new Promise<Line>((resolve, reject) => {
      waiter = { test, resolve };
      waiters.add(waiter);
      void exit.then(({ code, signal }) =>
        reject(new Error(`the example exited (${code ?? signal}) before ${what}\n${output()}`)),
      );
    });
    return within(found, ms, what).finally(() => waiters.delete(waiter!));
  };
  return { child, lines, exit, line, output };
}

type Outcome =
  | { kind: 'ok'; connection: string | undefined }
  | { kind: 'refused' }
  | { kind: 'error'; detail: string };

/** One GET; `ok` only for a complete 200 whose body is the whole 64-hex-digit digest the example answers. */
function get(port: number, path: string, agent: Agent | false): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('error', (err: NodeJS.ErrnoException) =>
        resolve({ kind: 'error', detail: `response ${err.code ?? ''} ${err.message}` }),
      );
      res.on('end', () => {
        const length = Number(res.headers['content-length']);
        if (res.statusCode === 200 && res.complete && length === body.length) {
          resolve({ kind: 'ok', connection: res.headers.connection });
        } else {
          resolve({
            kind: 'error',
            detail: `status ${res.statusCode}, complete ${res.complete}, ${body.length}/${length} bytes: ${body}`,
          });
        }
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve({ kind: 'refused' });
      else
        resolve({
          kind: 'error',
          detail: `${err.code ?? ''} ${err.message} (reused socket: ${req.reusedSocket})`,
        });
    });
    req.end();
  });
}

describe('examples/graceful-server', () => {
  it('SIGTERM under keep-alive load: every accepted request completes, no connection is reset, exit 0', {
    timeout: 60_000,
  }, async (t) => {
    const ex = startExample();
    const listening = await ex.line((l) => typeof l.listening === 'number', 20_000, 'the listening line');
    const port = listening.listening as number;

    // Ready once listening: readiness is green, and probes are never counted as requests.
    const probe = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/health/ready', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
        .on('error', reject)
        .end();
    });
    assert.equal(probe.status, 200, probe.body);
    assert.equal((JSON.parse(probe.body) as { state: string }).state, 'ready');

    // CLIENTS keep-alive loops, each sending `?ms=100` requests back to back until a new connection is refused.
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
    const stats = { ok: 0, okAfterSigterm: 0, closeHeaders: 0, refused: 0, inflight: 0 };
    const errors: string[] = [];
    let sigtermSent = false;
    let loaded!: () => void;
    const loadedUp = new Promise<void>((resolve) => {
      loaded = resolve;
    });
    const loop = async (client: number) => {
      for (let n = 0; ; n++) {
        stats.inflight++;
        const outcome = await get(port, `/c${client}/r${n}?ms=${HANDLER_MS}`, agent);
        stats.inflight--;
        if (outcome.kind === 'refused') {
          stats.refused++;
          return; // the listener is closed: a refused new connection is expected, this client stops
        }
        if (outcome.kind === 'error') {
          errors.push(`client ${client} request ${n}: ${outcome.detail}`);
          return;
        }
        stats.ok++;
        if (sigtermSent) stats.okAfterSigterm++;
        if (outcome.connection === 'close') stats.closeHeaders++;
        // Every client has had a few keep-alive round trips: time to stop the server under load.
        if (stats.ok === CLIENTS * 3) loaded();
      }
    };
    const loops = Array.from({ length: CLIENTS }, (_, i) => loop(i));
    await within(
      Promise.race([
        loadedUp,
        Promise.all(loops).then(() => {
          throw new Error(`every client stopped before the load built up: ${errors.join('; ')}`);
        }),
      ]),
      20_000,
      `${CLIENTS * 3} responses under load`,
    );

    const inflightAtSigterm = stats.inflight;
    const t0 = performance.now();
    sigtermSent = true;
    process.kill(ex.child.pid!, 'SIGTERM');
    const exit = await within(ex.exit, 10_000, 'the example to exit by itself after SIGTERM').catch((err) => {
      throw new Error(
        `${err.message}\nclients: ${JSON.stringify(stats)}, errors: ${errors.join('; ')}\n${ex.output()}`,
      );
    });
    const took = Math.round(exit.at - t0);
    await within(Promise.all(loops), 10_000, 'every client loop to stop');
    agent.destroy();

    const context = `\nclients: ${JSON.stringify(stats)}\n${ex.output()}`;
    assert.deepEqual(
      { code: exit.code, signal: exit.signal },
      { code: 0, signal: null },
      `clean exit${context}`,
    );
    assert.deepEqual(errors, [], `no reset, no hang-up, no incomplete or non-200 response${context}`);
    assert.ok(inflightAtSigterm >= CLIENTS / 2, `${inflightAtSigterm} requests were in flight at SIGTERM`);
    assert.ok(stats.okAfterSigterm > 0, `requests in flight at SIGTERM were answered${context}`);
    assert.ok(stats.closeHeaders > 0, `responses written during the drain carry Connection: close${context}`);
    assert.equal(stats.refused, CLIENTS, `every client stopped on a refused new connection${context}`);

    const counts = (await ex.line((l) => 'counts' in l, 1_000, 'the counts line')).counts as {
      started: number;
      finished: number;
    };
    assert.ok(counts.started >= stats.ok && counts.started > 0, `counts ${JSON.stringify(counts)}${context}`);
    assert.equal(counts.finished, counts.started, `every request the server started was finished${context}`);
    assert.equal(
      stats.ok,
      counts.finished,
      `and every one of them reached its client as a full 200${context}`,
    );
    t.diagnostic(
      `SIGTERM → exit ${took} ms; in flight at SIGTERM ${inflightAtSigterm}; clients ${JSON.stringify(stats)}; ` +
        `server ${JSON.stringify(counts)}`,
    );
    assert.ok(took < EXIT_WITHIN, `exited ${took} ms after SIGTERM (limit ${EXIT_WITHIN} ms)${context}`);
  });
});
