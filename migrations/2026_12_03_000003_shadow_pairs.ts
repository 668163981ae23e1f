/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// The shadow stage's evidence: for a sample of production's live calls, the candidate's answer to the same request,
// asked in the background. A pair holds conversation text, so it hangs off its interaction (on delete cascade): an
// erasure that deletes the interaction takes the pair with it, and a pair is only ever written for an interaction
// that exists. A call dropped because the shadow queue was full is a row too (status 'dropped', no text): counted.
// Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('shadow_pairs')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id').onDelete('cascade'))
    .addColumn('version_id', 'uuid', (c) => c.notNull().references('model_versions.id').onDelete('cascade'))
    .addColumn('interaction_id', 'uuid', (c) => c.references('interactions.id').onDelete('cascade'))
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('answered', 'failed', 'dropped')`))
    .addColumn('messages', 'jsonb')
    .addColumn('production_answer', 'text')
    .addColumn('candidate_answer', 'text')
    .addColumn('production_latency_ms', 'double precision')
    .addColumn('candidate_latency_ms', 'double precision')
    .addColumn('error', 'text')
    .addColumn('outcome', 'text', (c) => c.check(sql`outcome in ('win', 'loss', 'tie')`))
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('shadow_pairs_version_at_idx').on('shadow_pairs').columns(['version_id', 'at']).execute();
  await db.schema.createIndex('shadow_pairs_interaction_idx').on('shadow_pairs').column('interaction_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('shadow_pairs').ifExists().execute();
}
