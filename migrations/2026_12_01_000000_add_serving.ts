/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// Serving: what answered each chat call (for canary comparison), which versions may serve, and the version a
// rollback returns to. Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  // One row per POST /v1/chat call, answered or not: the canary is compared with production on these.
  await db.schema
    .createTable('serving_calls')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id'))
    // The version that was asked first (the canary for a canary subject); null when nothing could serve.
    .addColumn('version_id', 'uuid', (c) => c.references('model_versions.id'))
    .addColumn('alias', 'text', (c) => c.notNull().check(sql`alias in ('production', 'canary')`))
    .addColumn('ok', 'boolean', (c) => c.notNull())
    // The canary failed and production answered instead.
    .addColumn('fell_back', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('error', 'text')
    .addColumn('latency_ms', 'real', (c) => c.notNull())
    // With a JSON-schema format: whether the answer (after the one retry) validated.
    .addColumn('schema_valid', 'boolean')
    .addColumn('interaction_id', 'uuid', (c) => c.references('interactions.id').onDelete('set null'))
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('serving_calls_version_at_idx')
    .on('serving_calls')
    .columns(['version_id', 'at'])
    .execute();
  await db.schema.createIndex('serving_calls_model_at_idx').on('serving_calls').columns(['model_id', 'at']).execute();
  await db.schema.createIndex('interactions_version_idx').on('interactions').column('model_version_id').execute();

  // The reasons and time of each status change of a version (registered, rejected, canary, production, ...).
  await db.schema.alterTable('model_versions').addColumn('status_reason', 'text').execute();
  await db.schema.alterTable('model_versions').addColumn('status_at', 'timestamptz').execute();
  // A canary's moves change its share; the history keeps it.
  await db.schema.alterTable('alias_history').addColumn('percent', 'smallint').execute();
  await db.schema.createIndex('alias_history_model_at_idx').on('alias_history').columns(['model_id', 'at']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('alias_history_model_at_idx').ifExists().execute();
  await db.schema.alterTable('alias_history').dropColumn('percent').execute();
  await db.schema.alterTable('model_versions').dropColumn('status_at').execute();
  await db.schema.alterTable('model_versions').dropColumn('status_reason').execute();
  await db.schema.dropIndex('interactions_version_idx').ifExists().execute();
  await db.schema.dropTable('serving_calls').ifExists().execute();
}
