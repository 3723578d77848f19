/**
 * tus upload locks in PostgreSQL (`weft_tus_locks` in the connection's schema), for nodes that share a database but
 * no Redis (`QUEUE_URL=amqp://…` with `DATABASE_URL`): the same leases as `SqliteLeases`, on the database's clock.
 */
import type pg from 'pg';
import type { LeaseBackend } from './tus-lock.ts';

const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

export class PgLeases implements LeaseBackend {
  readonly #pool: pg.Pool;
  #ready: Promise<unknown> | undefined;

  /** `pool`: the caller's; the table is made at first use. */
  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  #table(): Promise<unknown> {
    this.#ready ??= this.#pool
      .query(
        `CREATE TABLE IF NOT EXISTS weft_tus_locks (
           id text PRIMARY KEY,
           owner text NOT NULL,
           until bigint NOT NULL,
           release_requested boolean NOT NULL DEFAULT false
         )`,
      )
      .catch((err: unknown) => {
        this.#ready = undefined; // tried again by the next call
        throw err;
      });
    return this.#ready;
  }

  async acquire(id: string, owner: string, ttlMs: number): Promise<boolean> {
    await this.#table();
    const { rowCount } = await this.#pool.query(
      `INSERT INTO weft_tus_locks (id, owner, until) VALUES ($1, $2, ${NOW_MS} + $3)
       ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, until = excluded.until, release_requested = false
       WHERE weft_tus_locks.until < ${NOW_MS}`,
      [id, owner, ttlMs],
    );
    return rowCount === 1;
  }

  async renew(id: string, owner: string, ttlMs: number) {
    await this.#table();
    const { rows } = await this.#pool.query<{ release_requested: boolean }>(
      `UPDATE weft_tus_locks SET until = ${NOW_MS} + $3 WHERE id = $1 AND owner = $2 RETURNING release_requested`,
      [id, owner, ttlMs],
    );
    return { held: rows.length === 1, releaseRequested: rows[0]?.release_requested === true };
  }

  async releaseRequested(id: string, owner: string): Promise<boolean> {
    await this.#table();
    const { rows } = await this.#pool.query<{ release_requested: boolean }>(
      'SELECT release_requested FROM weft_tus_locks WHERE id = $1 AND owner = $2',
      [id, owner],
    );
    return rows[0]?.release_requested === true;
  }

  async requestRelease(id: string): Promise<void> {
    await this.#table();
    await this.#pool.query('UPDATE weft_tus_locks SET release_requested = true WHERE id = $1', [id]);
  }

  async release(id: string, owner: string): Promise<void> {
    await this.#table();
    await this.#pool.query('DELETE FROM weft_tus_locks WHERE id = $1 AND owner = $2', [id, owner]);
  }
}
