/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// The score stage's cache: a judge's score of a row, by (judge, rubric, the row's redacted bytes), so that a row is
// not judged again every night. The reason is the judge's words about conversation text, so a score hangs off the
// interaction it was made for (on delete cascade): an erasure that deletes the interaction takes it with it.
// Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('row_scores')
    .addColumn('judge', 'text', (c) => c.notNull())
    .addColumn('rubric_sha256', 'text', (c) => c.notNull())
    .addColumn('row_sha256', 'text', (c) => c.notNull())
    .addColumn('interaction_id', 'uuid', (c) => c.notNull().references('interactions.id').onDelete('cascade'))
    .addColumn('score', 'double precision', (c) => c.notNull().check(sql`score >= 0 and score <= 1`))
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('row_scores_pkey', ['judge', 'rubric_sha256', 'row_sha256'])
    .execute();
  await db.schema.createIndex('row_scores_interaction_idx').on('row_scores').column('interaction_id').execute();
  // The dataset's quality report (the score stage's), kept with it.
  await db.schema.alterTable('datasets').addColumn('quality', 'jsonb').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('datasets').dropColumn('quality').execute();
  await db.schema.dropTable('row_scores').ifExists().execute();
}
