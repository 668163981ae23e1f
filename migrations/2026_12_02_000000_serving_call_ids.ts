/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import type { Kysely } from 'kysely';

// Each served call carries the API's id for it, so a batch the recorder writes again (its commit went through but
// the acknowledgement was lost) cannot count a call twice in the canary's comparison. Calls recorded before this
// migration keep a null id. Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('serving_calls').addColumn('call_id', 'uuid').execute();
  await db.schema.createIndex('serving_calls_call_id_key').unique().on('serving_calls').column('call_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('serving_calls_call_id_key').ifExists().execute();
  await db.schema.alterTable('serving_calls').dropColumn('call_id').execute();
}
