/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// The data plane: idempotent feedback, lineage that cannot outlive its interaction, erasure records.
// Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  // An app may retry a feedback POST; its own id makes the retry a no-op. Several feedbacks per interaction stay.
  await db.schema.alterTable('feedback').addColumn('external_id', 'text').execute();
  await db.schema
    .createIndex('feedback_interaction_external_uq')
    .on('feedback')
    .columns(['interaction_id', 'external_id'])
    .unique()
    .execute();

  // A lineage row must name an interaction that exists. Erasure deletes a subject's lineage rows and then their
  // interactions; an export committing lineage for an interaction erased meanwhile fails on this key and
  // re-exports without it, so an erased subject never slips into a dataset that is being written.
  await db.schema
    .alterTable('dataset_items')
    .addForeignKeyConstraint('dataset_items_interaction_fk', ['interaction_id'], 'interactions', ['id'])
    .execute();
  // Rows are identified by their bytes: erasure rewrites an object by dropping the rows with these hashes.
  await db.schema
    .createIndex('dataset_items_dataset_row_uq')
    .on('dataset_items')
    .columns(['dataset_id', 'row_sha256'])
    .unique()
    .execute();

  // One erasure request. The subject is named only by a keyed hash: the record must not keep the id it erased.
  await db.schema
    .createTable('erasures')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('app_id', 'text', (c) => c.notNull().references('apps.id'))
    .addColumn('subject_hash', 'text', (c) => c.notNull())
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('pending', 'done')`))
    .addColumn('interactions', 'integer', (c) => c.notNull())
    .addColumn('feedback', 'integer', (c) => c.notNull())
    // [{ datasetId, rows: [{ split, rowSha256 }], rewritten: bool, objects: [{ key, sha256, bytes }] }]
    .addColumn('datasets', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('model_versions', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('completed_at', 'timestamptz')
    .execute();
  await db.schema
    .createIndex('erasures_pending_idx')
    .on('erasures')
    .column('status')
    .where('status', '=', 'pending')
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('erasures').ifExists().execute();
  await db.schema.dropIndex('dataset_items_dataset_row_uq').ifExists().execute();
  await db.schema.alterTable('dataset_items').dropConstraint('dataset_items_interaction_fk').ifExists().execute();
  await db.schema.dropIndex('feedback_interaction_external_uq').ifExists().execute();
  await db.schema.alterTable('feedback').dropColumn('external_id').execute();
}
