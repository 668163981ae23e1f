import { Router } from 'express';
import { z } from 'zod';
import type { ChatMessage } from '../db/database';
import type { Db } from '../db/pool';
import { insertInteractions } from '../db/queries/interactions';
import { slug } from '../domain/model-config';
import { assertModelAccess, principalOf, requireRole } from './auth';
import { HttpError } from './errors';
import { parse } from './validate';

export const MAX_BATCH = 500;
const text = z.string().min(1).max(100_000);

const messageSchema = z
  .object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(100_000) })
  .strict();

/**
 * One interaction in any of the three shapes apps already log: chat `messages`, `prompt`/`completion`, or
 * `instruction`/`input`/`output`. Stored in one canonical form (chat messages).
 */
export const interactionSchema = z
  .object({
    id: z.string().min(1).max(200).optional(),
    model: slug,
    subject: z.string().min(1).max(200),
    messages: z.array(messageSchema).min(2).max(200).optional(),
    prompt: text.optional(),
    completion: text.optional(),
    instruction: text.optional(),
    input: z.string().max(100_000).optional(),
    output: text.optional(),
    metadata: z
      .record(z.string().max(100), z.union([z.string().max(2000), z.number(), z.boolean(), z.null()]))
      .refine((m) => Object.keys(m).length <= 50, 'at most 50 metadata keys')
      .optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    const shapes = [
      v.messages !== undefined,
      v.prompt !== undefined || v.completion !== undefined,
      v.instruction !== undefined || v.output !== undefined,
    ];
    const n = shapes.filter(Boolean).length;
    if (n !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['messages'],
        message: 'give exactly one of: messages | prompt+completion | instruction+output',
      });
      return;
    }
    if (shapes[1] && (v.prompt === undefined || v.completion === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [v.prompt === undefined ? 'prompt' : 'completion'],
        message: 'prompt and completion go together',
      });
    }
    if (shapes[2] && (v.instruction === undefined || v.output === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [v.instruction === undefined ? 'instruction' : 'output'],
        message: 'instruction and output go together',
      });
    }
    if (v.input !== undefined && !shapes[2])
      ctx.addIssue({ code: 'custom', path: ['input'], message: 'input belongs with instruction' });
    if (v.messages) {
      if (v.messages.at(-1)?.role !== 'assistant')
        ctx.addIssue({ code: 'custom', path: ['messages'], message: 'the last message must be the assistant turn' });
      if (!v.messages.some((m) => m.role === 'user'))
        ctx.addIssue({ code: 'custom', path: ['messages'], message: 'needs at least one user turn' });
    }
  });
export type InteractionInput = z.output<typeof interactionSchema>;

const batchSchema = z
  .object({
    interactions: z.array(interactionSchema).min(1).max(MAX_BATCH, `a batch holds at most ${MAX_BATCH} interactions`),
  })
  .strict();

/**
 * A body with `interactions` is a batch, anything else one interaction. The schema is chosen up front rather than
 * with z.union: when every option of a union fails, zod reports only "body: Invalid input", losing the field at
 * fault (`body.messages.1.role`) and the batch cap.
 */
const bodySchemaFor = (body: unknown) =>
  typeof body === 'object' && body !== null && 'interactions' in body ? batchSchema : interactionSchema;

export function toMessages(i: InteractionInput): ChatMessage[] {
  if (i.messages) return i.messages;
  if (i.prompt !== undefined)
    return [
      { role: 'user', content: i.prompt },
      { role: 'assistant', content: i.completion! },
    ];
  const user = i.input ? `${i.instruction}\n\n${i.input}` : i.instruction!;
  return [
    { role: 'user', content: user },
    { role: 'assistant', content: i.output! },
  ];
}

export function createInteractionsRouter({ db }: { db: Db }) {
  const router = Router();

  router.post('/v1/interactions', requireRole('app'), async (req, res) => {
    const p = principalOf(req);
    const body = parse(bodySchemaFor(req.body), req, 'body');
    const items = 'interactions' in body ? body.interactions : [body];
    items.forEach((it, i) =>
      assertModelAccess(p, it.model, 'interactions' in body ? `body.interactions.${i}.model` : 'body.model'),
    );

    const modelIds = [...new Set(items.map((i) => i.model))];
    const models = await db.selectFrom('models').select(['id', 'app_id']).where('id', 'in', modelIds).execute();
    const appOf = new Map(models.map((m) => [m.id, m.app_id]));
    for (const id of modelIds) {
      if (!appOf.has(id)) throw new HttpError(404, 'model_not_found', `model ${id} does not exist`, 'model');
      if (p.appId && appOf.get(id) !== p.appId)
        throw new HttpError(403, 'forbidden', `model ${id} is not accessible with this key`, 'model');
    }

    // One transaction: the whole batch is written or none of it, and 2xx means it is committed.
    const results = await db.transaction().execute((trx) =>
      insertInteractions(
        trx,
        items.map((it) => ({ ...it, appId: appOf.get(it.model)!, messages: toMessages(it), source: 'api' })),
      ),
    );
    const accepted = results.filter((r) => !r.duplicate).length;
    res
      .status(accepted > 0 ? 201 : 200)
      .json({ accepted, duplicates: results.length - accepted, interactions: results });
  });

  return router;
}
