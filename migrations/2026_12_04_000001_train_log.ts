/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// The train stage's curves: the training loss of every logged step and the held-out loss of every evaluation, as
// the trainer reported them (numbers only, no text: nothing here for an erasure to find). A step redone after a
// resume replaces its row. Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('train_log')
    .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('train', 'validation')`))
    .addColumn('step', 'integer', (c) => c.notNull().check(sql`step >= 0`))
    .addColumn('loss', 'double precision')
    .addColumn('lr', 'double precision')
    .addColumn('tokens_per_s', 'double precision')
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('train_log_pkey', ['run_id', 'kind', 'step'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('train_log').ifExists().execute();
}
