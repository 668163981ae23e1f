/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// Objects a stage writes from a dataset's conversation text other than the dataset itself — evaluation pairs, the
// judge's verdicts, parity cases, and whatever later stages add — registered before they are written, so that an
// erasure finds every one and removes the erased rows from it. Each is JSON lines with a `row` (the sha256 of the
// dataset row it came from) on every line. Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('derived_objects')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('dataset_id', 'text', (c) => c.notNull().references('datasets.id'))
    .addColumn('run_id', 'text')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('derived_objects_dataset_idx').on('derived_objects').column('dataset_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('derived_objects').ifExists().execute();
}
