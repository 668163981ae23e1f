import { Router } from 'express';
import { z } from 'zod';
import type { Db } from '../db/pool';
import {
  findConversationTurns,
  findInteractionsForFeedback,
  insertFeedback,
  MAX_CONVERSATION_TURNS,
  type Feedback,
} from '../db/queries/feedback';
import { ErasedDuringWrite, insertInteractions, type StoredInteraction } from '../db/queries/interactions';
import { appsOfModels } from '../db/queries/models';
import { slug } from '../domain/model-config';
import { feedbackSchema } from '../ingest/feedback';
import { batchSchema, canonicalize, interactionSchema } from '../ingest/interaction';
import { conversationIdSchema } from '../ingest/metadata';
import { externalId } from '../ingest/text';
import { assertModelAccess, principalOf, requireRole } from './auth';
import { HttpError } from './errors';
import { parse } from './validate';

/**
 * A body with `interactions` is a batch, anything else one interaction. The schema is chosen up front rather than
 * with z.union: when every option of a union fails, zod reports only "body: Invalid input", losing the field at
 * fault (`body.messages.1.role`) and the batch cap.
 */
const bodySchemaFor = (body: unknown) =>
  typeof body === 'object' && body !== null && 'interactions' in body ? batchSchema : interactionSchema;

const feedbackParams = z.object({ id: externalId }).strict();
const feedbackQuery = z.object({ model: slug.optional() }).strict();
const conversationParams = z.object({ id: conversationIdSchema }).strict();

/** What this router validates with: the OpenAPI document (openapi.ts) is generated from these very objects. */
export const interactionsSchemas = {
  /** POST /v1/interactions takes either; bodySchemaFor chooses. */
  interaction: interactionSchema,
  batch: batchSchema,
  feedbackParams,
  feedbackQuery,
  feedback: feedbackSchema,
  conversationParams,
};

/** A stored feedback as the API shows it. */
const feedbackView = (f: Feedback, model: string) => ({
  id: f.id,
  interaction: f.interaction_id,
  model,
  externalId: f.external_id,
  thumbs: f.thumbs,
  rating: f.rating,
  correction: f.correction,
  comment: f.comment,
  createdAt: f.created_at,
});

export function createInteractionsRouter({ db }: { db: Db }) {
  const router = Router();

  // Validation lives in src/ingest so that `tuneloop import` applies exactly these rules.
  router.post('/v1/interactions', requireRole('app'), async (req, res) => {
    const p = principalOf(req);
    const body = parse(bodySchemaFor(req.body), req, 'body');
    const items = 'interactions' in body ? body.interactions : [body];
    items.forEach((it, i) =>
      assertModelAccess(p, it.model, 'interactions' in body ? `body.interactions.${i}.model` : 'body.model'),
    );

    const modelIds = [...new Set(items.map((i) => i.model))];
    const appOf = await appsOfModels(db, modelIds);
    for (const id of modelIds) {
      if (!appOf.has(id)) throw new HttpError(404, 'model_not_found', `model ${id} does not exist`, 'model');
      if (p.appId && appOf.get(id) !== p.appId)
        throw new HttpError(403, 'forbidden', `model ${id} is not accessible with this key`, 'model');
    }

    // One transaction: the whole batch is written or none of it, and 2xx means it is committed.
    let results: StoredInteraction[];
    try {
      results = await db.transaction().execute((trx) =>
        insertInteractions(
          trx,
          items.map((it) => ({ ...canonicalize(it), appId: appOf.get(it.model)!, source: 'api' })),
        ),
      );
    } catch (err) {
      if (err instanceof ErasedDuringWrite) throw new HttpError(503, 'retry', err.message, undefined, 1);
      throw err;
    }
    // A single interaction of an erased subject is gone for good (410); in a batch, it is answered per item, so a
    // batch an app keeps retrying is not refused forever for one erased item.
    if (!('interactions' in body) && results[0]!.erased) {
      throw new HttpError(
        410,
        'erased',
        `interaction ${results[0]!.externalId} of model ${items[0]!.model} was erased with its subject; it is not stored again`,
        'body.id',
      );
    }
    const erased = results.filter((r) => r.erased).length;
    const accepted = results.filter((r) => !r.duplicate && !r.erased).length;
    res.status(accepted > 0 ? 201 : 200).json({
      accepted,
      duplicates: results.filter((r) => r.duplicate).length,
      erased,
      interactions: results,
    });
  });

  /**
   * Feedback on an interaction, named by tuneloop's id or the app's own. An interaction that does not exist and one
   * of another app get the same 404, so a key cannot probe for ids outside its reach.
   */
  router.post('/v1/interactions/:id/feedback', requireRole('app'), async (req, res) => {
    const p = principalOf(req);
    const { id } = parse(feedbackParams, req, 'params');
    const { model } = parse(feedbackQuery, req, 'query');
    const body = parse(feedbackSchema, req, 'body');
    if (model) assertModelAccess(p, model, 'query.model');

    const { feedback, duplicate, interaction } = await db.transaction().execute(async (trx) => {
      const found = await findInteractionsForFeedback(trx, id, { appId: p.appId, models: p.models, model });
      if (!found.length) throw new HttpError(404, 'interaction_not_found', `interaction ${id} not found`, 'params.id');
      if (found.length > 1)
        throw new HttpError(
          409,
          'ambiguous_interaction',
          `interaction id ${id} is used by several models of this key; name the model with ?model=`,
          'query.model',
        );
      const stored = await insertFeedback(trx, {
        interactionId: found[0]!.id,
        externalId: body.id ?? null,
        thumbs: body.thumbs ?? null,
        rating: body.rating ?? null,
        correction: body.correction ?? null,
        comment: body.comment ?? null,
      });
      return { ...stored, interaction: found[0]! };
    });
    res.status(duplicate ? 200 : 201).json({ duplicate, feedback: feedbackView(feedback, interaction.model_id) });
  });

  /**
   * Feedback on a whole conversation: the same feedback on every turn the app recorded with this conversation id
   * (`metadata.conversation_id`, or the OpenAI surface's conversation id). A retried POST with the same feedback
   * `id` stores nothing twice, turn by turn. 404 as above for a conversation outside the key's reach.
   */
  router.post('/v1/conversations/:id/feedback', requireRole('app'), async (req, res) => {
    const p = principalOf(req);
    const { id } = parse(conversationParams, req, 'params');
    const { model } = parse(feedbackQuery, req, 'query');
    const body = parse(feedbackSchema, req, 'body');
    if (model) assertModelAccess(p, model, 'query.model');
    if (body.correction !== undefined) {
      // A correction is one answer's replacement: on every turn it would teach each of them the same answer.
      throw new HttpError(
        400,
        'invalid_value',
        'a correction replaces one answer: give it on that interaction (POST /v1/interactions/:id/feedback)',
        'body.correction',
      );
    }

    const { stored, turns } = await db.transaction().execute(async (trx) => {
      const turns = await findConversationTurns(trx, id, { appId: p.appId, models: p.models, model });
      if (!turns.length)
        throw new HttpError(404, 'conversation_not_found', `conversation ${id} not found`, 'params.id');
      if (new Set(turns.map((t) => t.model_id)).size > 1)
        throw new HttpError(
          409,
          'ambiguous_conversation',
          `conversation id ${id} is used by several models of this key; name the model with ?model=`,
          'query.model',
        );
      if (turns.length > MAX_CONVERSATION_TURNS)
        throw new HttpError(
          422,
          'conversation_too_long',
          `conversation ${id} has more than ${MAX_CONVERSATION_TURNS} turns; give feedback on its interactions one by one`,
          'params.id',
        );
      const stored = [];
      for (const turn of turns) {
        stored.push(
          await insertFeedback(trx, {
            interactionId: turn.id,
            externalId: body.id ?? null,
            thumbs: body.thumbs ?? null,
            rating: body.rating ?? null,
            correction: body.correction ?? null,
            comment: body.comment ?? null,
          }),
        );
      }
      return { stored, turns };
    });
    const duplicate = stored.every((s) => s.duplicate);
    res.status(duplicate ? 200 : 201).json({
      conversation: id,
      model: turns[0]!.model_id,
      turns: turns.length,
      duplicate,
      feedback: stored.map((s) => feedbackView(s.feedback, turns[0]!.model_id)),
    });
  });

  return router;
}
