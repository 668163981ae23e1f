import { sql, type Transaction } from 'kysely';
import type { ChatMessage, Database } from '../database';

export interface InteractionToStore {
  appId: string;
  model: string;
  subject: string;
  /** The app's own id: a retried write with the same id is recognised and not stored twice. */
  id?: string;
  messages: ChatMessage[];
  metadata?: Record<string, unknown>;
  source: string;
}

export interface StoredInteraction {
  id: string;
  externalId: string | null;
  duplicate: boolean;
}

/** Stores interactions (creating their subjects, without consent) inside the caller's transaction. */
export async function insertInteractions(
  trx: Transaction<Database>,
  items: InteractionToStore[],
): Promise<StoredInteraction[]> {
  const out: StoredInteraction[] = [];
  for (const it of items) {
    const subject = await trx
      .insertInto('subjects')
      .values({
        app_id: it.appId,
        external_id: it.subject,
        training_consent: null,
        consent_policy_version: null,
        consent_updated_at: null,
      })
      .onConflict((oc) => oc.columns(['app_id', 'external_id']).doUpdateSet({ external_id: sql`excluded.external_id` }))
      .returning('id')
      .executeTakeFirstOrThrow();
    const inserted = await trx
      .insertInto('interactions')
      .values({
        model_id: it.model,
        subject_id: subject.id,
        external_id: it.id ?? null,
        source: it.source,
        messages: JSON.stringify(it.messages),
        metadata: JSON.stringify(it.metadata ?? {}),
        model_version_id: null,
        latency_ms: null,
      })
      .onConflict((oc) => oc.columns(['model_id', 'external_id']).doNothing())
      .returning('id')
      .executeTakeFirst();
    if (inserted) {
      out.push({ id: inserted.id, externalId: it.id ?? null, duplicate: false });
      continue;
    }
    const existing = await trx
      .selectFrom('interactions')
      .select('id')
      .where('model_id', '=', it.model)
      .where('external_id', '=', it.id!)
      .executeTakeFirstOrThrow();
    out.push({ id: existing.id, externalId: it.id ?? null, duplicate: true });
  }
  return out;
}

/** Sets a subject's training consent (creating the subject) and records the event. */
export async function setConsent(
  trx: Transaction<Database>,
  input: { appId: string; subject: string; training: boolean; policyVersion: string },
) {
  const now = new Date();
  const row = await trx
    .insertInto('subjects')
    .values({
      app_id: input.appId,
      external_id: input.subject,
      training_consent: input.training,
      consent_policy_version: input.policyVersion,
      consent_updated_at: now,
    })
    .onConflict((oc) =>
      oc.columns(['app_id', 'external_id']).doUpdateSet({
        training_consent: input.training,
        consent_policy_version: input.policyVersion,
        consent_updated_at: now,
      }),
    )
    .returning(['id', 'training_consent', 'consent_policy_version', 'consent_updated_at'])
    .executeTakeFirstOrThrow();
  await trx
    .insertInto('consent_events')
    .values({ subject_id: row.id, training: input.training, policy_version: input.policyVersion })
    .execute();
  return row;
}
