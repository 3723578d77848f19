// examples/order-events: the seed's order service (orderPlaced -> email, inventory, analytics), the same service code
// in one process, under `weft start --workers 2`, and as two nodes on Redis. Email and inventory are groups (once
// per order, whichever process), analytics is fan-out (every process that runs it).
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { REDIS_URL, redisSkip } from '../bus/redis-helpers.ts';
import { killStarted, runWeft, startWeft } from '../cli/helpers.ts';
import { freePort } from '../cluster/helpers.ts';
import { eventually, readJsonLines } from '../helpers.ts';

const root = new URL('../../', import.meta.url).pathname;
const main = join(root, 'examples/order-events/main.ts');
const conditions = ['--conditions=weft-source'];
const dir = mkdtempSync(join(tmpdir(), 'weft-orders-'));
const children = new Set<ChildProcess>();
after(() => {
  killStarted();
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface Done {
  pid: number;
  service: 'email' | 'inventory' | 'analytics';
  text: string;
}
const read = (log: string) => readJsonLines<Done>(log);

async function order(port: number, user: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/orders?user=${user}`, { method: 'POST' });
  assert.equal(res.status, 200);
  return res.text();
}

/** Each order emailed and reserved once, and counted by analytics `copies` times. */
function checkOnce(log: string, orders: string[], copies: number): void {
  const lines = read(log);
  for (const id of orders) {
    assert.equal(
      lines.filter((l) => l.service === 'email' && l.text.includes(id)).length,
      1,
      `one email for ${id}`,
    );
    assert.equal(
      lines.filter((l) => l.service === 'inventory' && l.text.includes(id)).length,
      1,
      `one reservation for ${id}`,
    );
    assert.equal(
      lines.filter((l) => l.service === 'analytics' && l.text.includes(id)).length,
      copies,
      `analytics of ${id}`,
    );
  }
}

describe('examples/order-events', () => {
  it('in one process: three orders, each emailed, reserved and counted, then it exits by itself', async () => {
    const log = join(dir, 'one.jsonl');
    const code = await new Promise<number | null>((resolve) => {
      const c = execFile(process.execPath, [...conditions, main], {
        env: { ...process.env, ORDER_LOG: log },
        timeout: 30_000,
      });
      c.on('exit', resolve);
    });
    assert.equal(code, 0);
    const lines = read(log);
    assert.equal(lines.length, 9);
    const orders = [
      ...new Set(lines.filter((l) => l.service === 'email').map((l) => /o-[0-9a-f]{8}/.exec(l.text)![0])),
    ];
    assert.equal(orders.length, 3);
    checkOnce(log, orders, 1);
  });

  it('under weft start --workers 2: email and inventory once per order, analytics in both workers', async () => {
    const log = join(dir, 'cluster.jsonl');
    const port = await freePort();
    const env = { ...process.env, PORT: String(port), ORDER_LOG: log, WEFT_RUNTIME_DIR: join(dir, 'run') };
    const w = await startWeft([main, '--workers', '2', '--name', 'orders'], { env });
    try {
      const orders: string[] = [];
      for (let i = 0; i < 6; i++) orders.push(await order(port, `u-${i}`));
      await eventually('every order handled', () => read(log).length >= orders.length * 4, 15_000);
      checkOnce(log, orders, 2);
      assert.equal(
        new Set(
          read(log)
            .filter((l) => l.service === 'analytics')
            .map((l) => l.pid),
        ).size,
        2,
      );
    } finally {
      await runWeft(['stop', '--name', 'orders'], env);
      assert.equal(await w.exit, 0);
    }
  });

  it('as two nodes on Redis: email and inventory once per order across the nodes, analytics on both', async (t) => {
    const skip = await redisSkip();
    if (skip) return t.skip(skip);
    const log = join(dir, 'redis.jsonl');
    const prefix = `weft-test:orders:${randomUUID()}:`;
    const node = async () => {
      const port = await freePort();
      const child = spawn(process.execPath, [...conditions, main], {
        env: {
          ...process.env,
          PORT: String(port),
          ORDER_LOG: log,
          ORDER_BUS: 'redis',
          ORDER_BUS_PREFIX: prefix,
          REDIS_URL,
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.add(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d;
      });
      await eventually('a node to listen', () => out.includes('orders on'), 20_000);
      return { port, child, exited: new Promise((r) => child.on('exit', r)) };
    };
    const a = await node();
    const b = await node();
    try {
      const orders: string[] = [];
      for (let i = 0; i < 6; i++) orders.push(await order(i % 2 === 0 ? a.port : b.port, `u-${i}`));
      await eventually('every order handled', () => read(log).length >= orders.length * 4, 20_000);
      checkOnce(log, orders, 2);
    } finally {
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
      const { Redis } = await import('ioredis');
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    }
  });
});
