/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// The base model each version's adapter was trained on. An adapter only fits its own base: when a model's base
// changes, the next run starts over from the new base and is compared with it, not with production's adapter.
// Versions from before this migration get their model's base of today, the only one they can have been trained on
// unless it was changed since. Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('model_versions').addColumn('base_model', 'text').execute();
  await sql`update model_versions v set base_model = m.base_model from models m where m.id = v.model_id`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('model_versions').dropColumn('base_model').execute();
}
