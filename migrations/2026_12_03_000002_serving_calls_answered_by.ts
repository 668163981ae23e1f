/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// Who answered each served call (a local version, or the app's hosted incumbent), with the tokens it counted, for
// the canary against the incumbent and the migration report (local share, fallbacks, the incumbent's bill).
// Calls from before this migration were all answered locally when they were answered at all.
// Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('serving_calls')
    .addColumn('answered_by', 'text', (c) => c.check(sql`answered_by in ('local', 'incumbent')`))
    .addColumn('prompt_tokens', 'integer')
    .addColumn('completion_tokens', 'integer')
    .execute();
  await sql`update serving_calls set answered_by = 'local' where ok or fell_back`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('serving_calls')
    .dropColumn('answered_by')
    .dropColumn('prompt_tokens')
    .dropColumn('completion_tokens')
    .execute();
}
