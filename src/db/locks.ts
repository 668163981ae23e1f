import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { Db } from './pool';

export class LockTimeout extends Error {
  override readonly name = 'LockTimeout';
}

/**
 * PostgreSQL session advisory locks on a connection of their own, held while `fn` runs. A process that dies
 * closes its connection, and the lock goes with it: nothing is left locked by a crash.
 *
 * Without `waitMs` it fails at once (`{ ran: false }`) when another session holds the lock. With `waitMs` it tries
 * again every `pollMs` (calling `onWait`, e.g. to heartbeat, and giving up when `signal` aborts) and throws
 * LockTimeout after `waitMs`: a waiter never blocks inside PostgreSQL where nothing could stop it.
 */
export async function withAdvisoryLock<T>(
  db: Db,
  key: string,
  opts: { waitMs?: number; pollMs?: number; onWait?: () => void; signal?: AbortSignal },
  fn: () => Promise<T>,
): Promise<{ ran: true; value: T } | { ran: false }> {
  return db.connection().execute(async (conn) => {
    const deadline = Date.now() + (opts.waitMs ?? 0);
    for (;;) {
      const r = await sql<{ ok: boolean }>`select pg_try_advisory_lock(hashtextextended(${key}, 0)) as ok`.execute(
        conn,
      );
      if (r.rows[0]?.ok) break;
      if (opts.waitMs === undefined) return { ran: false as const };
      if (Date.now() >= deadline) throw new LockTimeout(`${key} stayed locked for ${opts.waitMs} ms`);
      opts.onWait?.();
      await sleep(opts.pollMs ?? 200, undefined, { signal: opts.signal });
    }
    try {
      return { ran: true as const, value: await fn() };
    } finally {
      await sql`select pg_advisory_unlock(hashtextextended(${key}, 0))`.execute(conn).catch(() => undefined);
    }
  });
}
