import { sql } from 'kysely';
import type { ChatMessage } from '../../domain/conversation';
import type { Conn } from '../pool';

// The synthesize stage's rows: interactions of source 'synthetic', named by app-side ids that start with a spec's
// prefix (domain/synthesis.ts sampleId).

/** Whether the app's subject `subject` exists and consents to training. */
export async function subjectConsents(db: Conn, appId: string, subject: string): Promise<boolean> {
  const row = await db
    .selectFrom('subjects')
    .select('training_consent')
    .where('app_id', '=', appId)
    .where('external_id', '=', subject)
    .executeTakeFirst();
  return row?.training_consent === true;
}

/** The app-side ids of the model's synthetic samples that start with `prefix`. */
export async function storedSampleIds(db: Conn, model: string, prefix: string): Promise<Set<string>> {
  const rows = await db
    .selectFrom('interactions')
    .select('external_id')
    .where('model_id', '=', model)
    .where('source', '=', 'synthetic')
    .where('external_id', 'like', `${prefix}%`)
    .execute();
  return new Set(rows.map((r) => r.external_id!));
}

/**
 * The model's synthetic samples whose id starts with `prefix` and ends with a sample number under `count`, in the
 * order they were stored, 200 at a time.
 */
export function streamSamples(
  db: Conn,
  model: string,
  prefix: string,
  count: number,
): AsyncIterableIterator<{ id: string; seq: number; messages: ChatMessage[] }> {
  return db
    .selectFrom('interactions')
    .select(['id', 'seq', 'messages'])
    .where('model_id', '=', model)
    .where('source', '=', 'synthetic')
    .where('external_id', 'like', `${prefix}%`)
    .where(sql<boolean>`substr(external_id, ${prefix.length + 1})::int < ${count}`)
    .orderBy('seq')
    .stream(200);
}
