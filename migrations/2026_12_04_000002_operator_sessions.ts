/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// The operator pages' sessions: an operator key exchanged for a cookie. Only the sha256 of the cookie's 256-bit
// secret is kept; a session dies with its key (revoked keys are checked on every request, a deleted key cascades).
// Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('operator_sessions')
    .addColumn('secret_sha256', 'text', (c) => c.primaryKey())
    .addColumn('key_id', 'text', (c) => c.notNull().references('api_keys.id').onDelete('cascade'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('operator_sessions_expires_idx').on('operator_sessions').column('expires_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('operator_sessions').ifExists().execute();
}
