import { sql } from 'kysely';
import type { Db } from './pool';

/**
 * PostgreSQL session advisory locks on a connection of their own, held while `fn` runs. A process that dies
 * closes its connection, and the lock goes with it: nothing is left locked by a crash.
 *
 * `wait: false` fails at once (returns `null` without running fn) when another session holds the lock;
 * `wait: true` queues behind it.
 */
export async function withAdvisoryLock<T>(
  db: Db,
  key: string,
  opts: { wait: boolean },
  fn: () => Promise<T>,
): Promise<{ ran: true; value: T } | { ran: false }> {
  return db.connection().execute(async (conn) => {
    if (opts.wait) {
      await sql`select pg_advisory_lock(hashtextextended(${key}, 0))`.execute(conn);
    } else {
      const r = await sql<{ ok: boolean }>`select pg_try_advisory_lock(hashtextextended(${key}, 0)) as ok`.execute(
        conn,
      );
      if (!r.rows[0]?.ok) return { ran: false as const };
    }
    try {
      return { ran: true as const, value: await fn() };
    } finally {
      await sql`select pg_advisory_unlock(hashtextextended(${key}, 0))`.execute(conn).catch(() => undefined);
    }
  });
}
