import { performance } from 'node:perf_hooks';
import { Router, type Response } from 'express';
import { z } from 'zod';
import { slug } from '../domain/model-config';
import { MAX_TURNS } from '../ingest/interaction';
import { metadataSchema } from '../ingest/metadata';
import { externalId, text } from '../ingest/text';
import { assertModelAccess, principalOf, requireRole } from './auth';
import { answerChat, streamChat, withinFairUse, type ChatEvent, type ChatServiceDeps } from './chat.service';
import { parse } from './validate';

const messageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: text() }).strict();

/** A conversation to continue: an optional system turn, then user/assistant alternating, ending with the user. */
export const conversation = z
  .array(messageSchema)
  .min(1, 'at least one user turn')
  .max(MAX_TURNS, `at most ${MAX_TURNS} turns`)
  .superRefine((messages, ctx) => {
    const start = messages[0]?.role === 'system' ? 1 : 0;
    for (let i = start; i < messages.length; i++) {
      const expected = (i - start) % 2 === 0 ? 'user' : 'assistant';
      if (messages[i]!.role !== expected) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'role'],
          message: `expected ${expected === 'user' ? 'a user' : 'an assistant'} turn here: a system turn may only come first, then user and assistant alternate`,
        });
        return;
      }
    }
    if (messages.at(-1)?.role !== 'user') {
      ctx.addIssue({ code: 'custom', path: [], message: 'must end with a user turn (the one to answer)' });
    }
  });

const optionsSchema = z
  .object({
    temperature: z.number().min(0).max(2),
    top_p: z.number().gt(0).max(1),
    top_k: z.number().int().min(1).max(1000),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1),
    num_predict: z.number().int().min(1).max(8192),
    repeat_penalty: z.number().min(0).max(2),
    stop: z.array(z.string().min(1).max(100)).max(8),
  })
  .partial()
  .strict();

const chatSchema = z
  .object({
    model: slug,
    /** The app's pseudonymous user: routing is sticky per subject, and the call is recorded under it. */
    subject: externalId,
    messages: conversation,
    /** A JSON schema the answer must match (Ollama's structured output), or "json"; default: the model's own. */
    format: z.union([z.literal('json'), z.record(z.string(), z.unknown())]).optional(),
    stream: z.boolean().default(false),
    options: optionsSchema.optional(),
    metadata: metadataSchema.optional(),
  })
  .strict();

/** What this router validates with: the OpenAPI document (openapi.ts) is generated from these very objects. */
export const chatSchemas = { chat: chatSchema };

export type ChatRouterDeps = ChatServiceDeps;

/** POST /v1/chat (see chat.service.ts): a plain JSON answer, or with `stream: true` server-sent events. */
export function createChatRouter(deps: ChatRouterDeps) {
  const router = Router();

  router.post('/v1/chat', requireRole('app'), async (req, res) => {
    const startedAt = performance.now();
    const signal = callerGone(res);
    const principal = principalOf(req);
    const { stream, ...body } = parse(chatSchema, req, 'body');
    assertModelAccess(principal, body.model, 'body.model');
    const call = { ...body, principal, signal, startedAt };
    await withinFairUse(deps, call, async () => {
      if (stream) {
        await streamChat(deps, call, eventWriter(res));
        return;
      }
      const answer = await answerChat(deps, call);
      if (answer) res.json(answer); // else the caller went away
    });
  });

  return router;
}

/** Aborts when the caller goes away before its answer is sent: the generation in Ollama ends too. */
export function callerGone(res: Response): AbortSignal {
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  return gone.signal;
}

/** The headers of a server-sent event stream (no proxy buffering, no transformation). */
export const EVENT_STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
} as const;

/** The one writer of server-sent events: the headers with the first event, the response ends with the last. */
function eventWriter(res: Response): (e: ChatEvent) => void {
  return ({ event, ...data }) => {
    if (!res.headersSent) res.writeHead(200, EVENT_STREAM_HEADERS);
    // Content chunks are plain `data` lines (the default event): what most SSE clients read without a listener.
    res.write(
      event === 'content' ? `data: ${JSON.stringify(data)}\n\n` : `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
    );
    if (event === 'done' || event === 'error') res.end();
  };
}
