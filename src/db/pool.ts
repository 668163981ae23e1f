import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import Cursor from 'pg-cursor';
import type { Logger } from '../log';
import type { Database } from './database';

export type Db = Kysely<Database>;
/** A transaction the caller opened (`db.transaction().execute(async (trx) => …)`). */
export type Trx = Transaction<Database>;
/** What a query function takes first: the database, or the caller's transaction. */
export type Conn = Db | Trx;

const pools = new WeakMap<Db, pg.Pool>();

/**
 * A transaction on a raw pg client of db's pool, for what kysely does not speak (COPY streams) and for
 * transactions held across object I/O. Commits when fn returns, rolls back when it throws; a client whose
 * rollback failed is discarded rather than returned to the pool.
 */
export async function withPgTransaction<T>(db: Db, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const pool = pools.get(db);
  if (!pool) throw new Error('this Db was not made by createDb');
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('begin');
    const out = await fn(client);
    await client.query('commit');
    return out;
  } catch (err) {
    await client.query('rollback').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken);
  }
}

// int8 (bigserial seq, byte counts) as JS numbers: all our values stay far below 2^53.
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/**
 * A kysely instance over a pg Pool that survives the database going away. pg emits 'error' on idle clients
 * and on clients whose connection dies between queries; an unhandled 'error' event kills Node, so every
 * client gets a listener and the pool gets one. Queries in flight fail and are retried by their callers
 * (activities by Temporal, API requests answer 503).
 */
export function createDb(connectionString: string, log: Logger, max = 10): Db {
  const pool = new pg.Pool({
    connectionString,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 5_000,
    types,
    application_name: 'tuneloop',
  });
  pool.on('error', (err) => log.warn({ err: errSummary(err) }, 'postgres idle client error'));
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ err: errSummary(err) }, 'postgres client error'));
  });
  // The cursor lets long reads (export) stream one query in chunks: `query.stream(n)`.
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool, cursor: Cursor }) });
  pools.set(db, pool);
  return db;
}

function errSummary(err: Error & { code?: string }) {
  return { message: err.message, code: err.code };
}

/** One round trip to the database (readiness checks). */
export async function ping(db: Conn): Promise<void> {
  await sql`select 1`.execute(db);
}

const TRANSIENT_SQLSTATE = /^(08|53|57P0[123]|40001|40P01)/;
const TRANSIENT_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']);

/** True when a database error means "the server is (temporarily) unreachable", not "your query is wrong". */
export function isTransientDbError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (TRANSIENT_NODE_CODES.has(code) || TRANSIENT_SQLSTATE.test(code))) return true;
    if (
      typeof message === 'string' &&
      /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|terminating connection/i.test(
        message,
      )
    )
      return true;
  }
  return false;
}
