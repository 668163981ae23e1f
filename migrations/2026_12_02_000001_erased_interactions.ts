/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// What an erasure leaves behind so that the app cannot bring the subject's data back by retrying an old write: the
// (model, app id) of each erased interaction, the app's id kept only as its SHA-256; and, for the chat API's
// recorder, an index to find a subject's erasures by the subject's hash and the time each took effect. Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('erased_interactions')
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id').onDelete('cascade'))
    // sha256 of the app's interaction id (UTF-8)
    .addColumn('external_id_sha256', 'bytea', (c) => c.notNull())
    .addColumn('erasure_id', 'uuid', (c) => c.notNull().references('erasures.id'))
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('erased_interactions_pkey', ['model_id', 'external_id_sha256'])
    .execute();
  // The chat API's recorder asks, per batch, whether a subject it recorded calls of was erased since: by the
  // subject's hash, and when (the erasure's last statement, not its transaction's start).
  await db.schema.createIndex('erasures_subject_idx').on('erasures').columns(['subject_hash', 'app_id']).execute();
  await db.schema.alterTable('erasures').addColumn('effective_at', 'timestamptz').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('erasures').dropColumn('effective_at').execute();
  await db.schema.dropIndex('erasures_subject_idx').ifExists().execute();
  await db.schema.dropTable('erased_interactions').ifExists().execute();
}
