import { sql, type Selectable } from 'kysely';
import type { FeedbackTable } from '../database';
import type { Trx } from '../pool';

export type Feedback = Selectable<FeedbackTable>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What a caller may reach: null means no limit (admin); an empty list of models reaches nothing. */
export interface InteractionScope {
  appId: string | null;
  models: readonly string[] | null;
  /** Only this model (the caller named it). */
  model?: string;
}

/**
 * The interactions `ref` names within `scope`: tuneloop's own id first, then the app's id (which is unique per model
 * only, so it can name several). At most two are returned, enough to tell "one" from "ambiguous". The rows are
 * locked `for key share` so that the feedback written next cannot lose its interaction to a concurrent erasure.
 */
export async function findInteractionsForFeedback(
  trx: Trx,
  ref: string,
  scope: InteractionScope,
): Promise<{ id: string; model_id: string }[]> {
  if (scope.models && !scope.models.length) return [];
  const find = (column: 'i.id' | 'i.external_id') => {
    let q = trx
      .selectFrom('interactions as i')
      .innerJoin('models as m', 'm.id', 'i.model_id')
      .select(['i.id', 'i.model_id'])
      .where(column, '=', ref);
    if (scope.appId) q = q.where('m.app_id', '=', scope.appId);
    if (scope.models) q = q.where('i.model_id', 'in', scope.models);
    if (scope.model) q = q.where('i.model_id', '=', scope.model);
    return q.orderBy('i.model_id').limit(2).forKeyShare('i').execute();
  };
  if (UUID.test(ref)) {
    const own = await find('i.id');
    if (own.length) return own;
  }
  return find('i.external_id');
}

/** The most turns one conversation's feedback reaches. */
export const MAX_CONVERSATION_TURNS = 1_000;

/**
 * The turns (interactions) of the conversation the app named `conversationId` within `scope`, by model, oldest
 * first: at most MAX_CONVERSATION_TURNS + 1 (one more tells "too many"). Locked `for key share`, as above.
 */
export async function findConversationTurns(
  trx: Trx,
  conversationId: string,
  scope: InteractionScope,
): Promise<{ id: string; model_id: string }[]> {
  if (scope.models && !scope.models.length) return [];
  let q = trx
    .selectFrom('interactions as i')
    .innerJoin('models as m', 'm.id', 'i.model_id')
    .select(['i.id', 'i.model_id'])
    // The same expression and predicate as the index (interactions_conversation_idx).
    .where(sql<boolean>`i.metadata ? 'conversation_id'`)
    .where(sql`i.metadata->>'conversation_id'`, '=', conversationId);
  if (scope.appId) q = q.where('m.app_id', '=', scope.appId);
  if (scope.models) q = q.where('i.model_id', 'in', scope.models);
  if (scope.model) q = q.where('i.model_id', '=', scope.model);
  return q
    .orderBy('i.model_id')
    .orderBy('i.created_at')
    .orderBy('i.id')
    .limit(MAX_CONVERSATION_TURNS + 1)
    .forKeyShare('i')
    .execute();
}

/**
 * Stores one feedback, or, when the app's feedback id was stored before for this interaction, returns that one.
 * Several feedbacks per interaction are kept: only the same (interaction, app feedback id) is a duplicate.
 */
export async function insertFeedback(
  trx: Trx,
  input: {
    interactionId: string;
    externalId: string | null;
    thumbs: 'up' | 'down' | null;
    rating: number | null;
    correction: string | null;
    comment: string | null;
  },
): Promise<{ feedback: Feedback; duplicate: boolean }> {
  const inserted = await trx
    .insertInto('feedback')
    .values({
      interaction_id: input.interactionId,
      external_id: input.externalId,
      thumbs: input.thumbs,
      rating: input.rating,
      correction: input.correction,
      comment: input.comment,
    })
    .onConflict((oc) => oc.columns(['interaction_id', 'external_id']).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return { feedback: inserted, duplicate: false };
  const existing = await trx
    .selectFrom('feedback')
    .selectAll()
    .where('interaction_id', '=', input.interactionId)
    .where('external_id', '=', input.externalId!)
    .executeTakeFirstOrThrow();
  return { feedback: existing, duplicate: true };
}
