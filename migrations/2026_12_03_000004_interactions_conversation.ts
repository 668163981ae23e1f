/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// Feedback on a whole conversation (POST /v1/conversations/:id/feedback) finds its turns by the conversation id the
// app passed (kept in the interaction's metadata as `conversation_id`): an index on it, per model, for the rows that
// have one. Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index interactions_conversation_idx on interactions (model_id, (metadata->>'conversation_id'))
    where metadata ? 'conversation_id'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index interactions_conversation_idx`.execute(db);
}
