import { performance } from 'node:perf_hooks';
import type { ValidateFunction } from 'ajv/dist/2020.js';
import { Router, type Response } from 'express';
import { z } from 'zod';
import type { ChatMessage } from '../db/database';
import type { ServingVersion } from '../db/queries/registry';
import { slug } from '../domain/model-config';
import { routesToCanary } from '../domain/routing';
import { MAX_TURNS } from '../ingest/interaction';
import { metadataSchema } from '../ingest/metadata';
import { externalId, text } from '../ingest/text';
import { compileSchema, InvalidSchemaError, matchesSchema } from '../llm/json-schema';
import { OllamaError, type ChatOptions, type OllamaClient } from '../llm/ollama';
import type { Logger } from '../log';
import { assertModelAccess, principalOf, requireRole } from './auth';
import { HttpError } from './errors';
import { newInteractionId, type ServingCache, type ServingRecorder } from './serving';
import { parse } from './validate';

const messageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: text() }).strict();

/** A conversation to continue: an optional system turn, then user/assistant alternating, ending with the user. */
const conversation = z
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
type ChatBody = z.output<typeof chatSchema>;

const warned = new Set<string>(); // once per model and reason, not once per call

/**
 * The answer's schema compiled. A request's schema that does not compile is a 400 naming `body.format`. A model's
 * own (`model` names it), stored before `models put` checked schemas with this engine, is the operator's to fix,
 * not a reason to refuse every call: answers are then checked for being JSON only, and the log says why.
 */
function validatorFor(schema: Record<string, unknown>, model: string | null, log: Logger): ValidateFunction | null {
  try {
    return compileSchema(schema);
  } catch (err) {
    if (!(err instanceof InvalidSchemaError)) throw err;
    if (model === null) throw new HttpError(400, 'invalid_request', `body.format: ${err.message}`, 'body.format');
    const key = `${model}\u0000${err.message}`;
    if (!warned.has(key)) {
      warned.add(key);
      log.warn(
        { model, err: err.message },
        "the model's outputSchema does not compile: answers are checked as JSON only",
      );
    }
    return null;
  }
}

export interface ChatRouterDeps {
  /** Production's Ollama. */
  ollama: OllamaClient;
  /** The canary's (the same client when one server serves both). */
  canaryOllama: OllamaClient;
  cache: ServingCache;
  recorder: ServingRecorder;
  log: Logger;
}

interface Answer {
  content: string;
  doneReason: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  schemaValid: boolean | null;
}

/**
 * POST /v1/chat: the app's model answers. The subject is routed to production or, by a hash of its id and the
 * canary's share, to the canary; the answer names the version that gave it. A canary that fails hands the request
 * to production (and the failure counts against the canary). With a JSON-schema `format` an answer that does not
 * validate is asked for once more. `stream: true` answers as server-sent events. Every call is recorded: the
 * conversation as an interaction of the version that answered (the next run's data, if the subject consents) and
 * the call itself for the canary comparison.
 */
export function createChatRouter(deps: ChatRouterDeps) {
  const router = Router();

  router.post('/v1/chat', requireRole('app'), async (req, res) => {
    const t0 = performance.now();
    // The caller going away ends the generation in Ollama too.
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const p = principalOf(req);
    const body = parse(chatSchema, req, 'body');
    assertModelAccess(p, body.model, 'body.model');
    const info = await deps.cache.get(body.model);
    if (!info.model) throw new HttpError(404, 'model_not_found', `model ${body.model} does not exist`, 'body.model');
    if (p.appId && info.model.appId !== p.appId) {
      throw new HttpError(403, 'forbidden', `model ${body.model} is not accessible with this key`, 'body.model');
    }
    const production = info.aliases.production;
    if (!production) {
      throw new HttpError(503, 'no_version_serving', `model ${body.model} has no production version yet`);
    }
    const schema =
      body.format === undefined ? info.model.outputSchema : body.format === 'json' ? null : (body.format as object);
    const format = body.format ?? info.model.outputSchema ?? undefined;
    const validate = schema
      ? validatorFor(schema as Record<string, unknown>, body.format === undefined ? body.model : null, deps.log)
      : null;
    const checkJson = format !== undefined;
    const messages: ChatMessage[] =
      info.model.systemPrompt && body.messages[0]!.role !== 'system'
        ? [{ role: 'system', content: info.model.systemPrompt }, ...body.messages]
        : body.messages;
    const canary = info.aliases.canary;
    const first = canary && routesToCanary(body.model, body.subject, canary.percent ?? 0) ? canary : production;
    const alias = first === production ? 'production' : 'canary';
    const id = newInteractionId();

    const record = (answeredBy: ServingVersion | null, answer: Answer | null, err: string | null, fellBack: boolean) =>
      deps.recorder.record({
        interactionId: id,
        appId: info.model!.appId,
        model: body.model,
        subject: body.subject,
        messages: answer && answeredBy ? [...body.messages, { role: 'assistant', content: answer.content }] : null,
        answeredBy: answeredBy?.versionId ?? null,
        latencyMs: performance.now() - t0,
        metadata: { ...body.metadata, servedBy: answeredBy?.version ?? null, alias },
        call: {
          versionId: first.versionId,
          alias,
          ok: err === null,
          fellBack,
          error: err,
          latencyMs: performance.now() - t0,
          schemaValid: answer && checkJson ? answer.schemaValid : null,
        },
      });

    const request = { messages, format: format as Record<string, unknown> | 'json' | undefined, options: body.options };
    if (body.stream) {
      await streamAnswer(deps, res, body, request, first, production, id, alias, validate, checkJson, gone, record);
      return;
    }
    const got = await withFallback(deps.log, body.model, first, production, gone.signal, record, (v) =>
      ask(serverOf(deps, v, production), v, request, validate, checkJson, gone.signal),
    );
    if (!got) return; // the caller went away
    const { version: answeredBy, value: answer, error } = got;
    const fellBack = answeredBy !== first;
    record(answeredBy, answer, error, fellBack);
    res.json({
      id,
      model: body.model,
      version: answeredBy.version,
      alias: fellBack ? 'production' : alias,
      message: { role: 'assistant', content: answer.content },
      doneReason: answer.doneReason,
      usage: { promptTokens: answer.promptTokens, completionTokens: answer.completionTokens },
      ...(checkJson ? { schemaValid: answer.schemaValid } : {}),
      latencyMs: Math.round((performance.now() - t0) * 100) / 100,
    });
  });

  return router;
}

/**
 * Which Ollama answers for a version: production's, or the canary's for the canary. Ollama keeps one runner per
 * weights file and reloads it whenever a request asks for another adapter on the same base, so a canary adapter
 * served beside production by one server would reload it at every switch between them (a measured 25 → 300 ms
 * p50 for the tiny model, seconds for an 8B one).
 */
function serverOf(deps: ChatRouterDeps, v: ServingVersion, production: ServingVersion): OllamaClient {
  return v === production ? deps.ollama : deps.canaryOllama;
}

type ChatRequestParts = {
  messages: ChatMessage[];
  format: Record<string, unknown> | 'json' | undefined;
  options: ChatOptions | undefined;
};

/** One answer from one version; with a format, one more try when the first does not validate. */
async function ask(
  ollama: OllamaClient,
  version: ServingVersion,
  req: ChatRequestParts,
  validate: ValidateFunction | null,
  checkJson: boolean,
  signal: AbortSignal,
): Promise<Answer> {
  for (let attempt = 0; ; attempt++) {
    const r = await ollama.chat({ model: version.tag, ...req }, signal);
    const valid = checkJson ? matchesSchema(r.content, validate) : null;
    if (valid === false && attempt === 0) continue;
    return {
      content: r.content,
      doneReason: r.doneReason,
      promptTokens: r.promptTokens,
      completionTokens: r.completionTokens,
      schemaValid: valid,
    };
  }
}

/**
 * Asks `first`; when that is the canary and it fails, asks production. Returns what answered, the canary's error
 * if there was one, and null when the caller went away. A failure of production (asked first or second) is a 502,
 * recorded; a request Ollama refuses as malformed is a 400.
 */
async function withFallback<T>(
  log: Logger,
  model: string,
  first: ServingVersion,
  production: ServingVersion,
  signal: AbortSignal,
  record: (by: ServingVersion | null, a: Answer | null, err: string | null, fellBack: boolean) => void,
  attempt: (v: ServingVersion) => Promise<T>,
): Promise<{ version: ServingVersion; value: T; error: string | null } | null> {
  try {
    return { version: first, value: await attempt(first), error: null };
  } catch (err) {
    if (signal.aborted) return null;
    refusedRequest(err);
    const error = describe(err);
    if (first === production) {
      record(null, null, error, false);
      throw unavailable(log, model, first, err);
    }
    log.warn({ model, version: first.version, err: error }, 'canary failed; production answers');
    try {
      return { version: production, value: await attempt(production), error };
    } catch (err2) {
      if (signal.aborted) return null;
      refusedRequest(err2);
      record(null, null, error, true);
      throw unavailable(log, model, production, err2);
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof OllamaError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Ollama refusing the request itself (HTTP 400: a `format` it cannot turn into a grammar, say) is the caller's
 * problem, answered 400 with Ollama's reason; it says nothing about the version, so it is not held against it.
 */
function refusedRequest(err: unknown) {
  if (err instanceof OllamaError && err.status === 400) {
    const reason = err.message.replace(/^.*?HTTP 400: /, '');
    throw new HttpError(400, 'invalid_request', `the model server refused the request: ${reason}`, 'body');
  }
}

/** 502 to the caller without the model server's address or internals; the details go to the log. */
function unavailable(log: Logger, model: string, version: ServingVersion, err: unknown): HttpError {
  log.error({ model, version: version.version, err: describe(err) }, 'the model server did not answer');
  return new HttpError(
    502,
    'model_unavailable',
    `version ${version.version} of ${model} could not answer; retry shortly`,
  );
}

/**
 * Server-sent events: `meta` (id, version, alias) with the first token, `data` lines of {content}, then `done`
 * ({doneReason, usage, schemaValid?, latencyMs}) or `error`. The canary's failure before its first token is handed
 * to production like a plain call; after the first token the stream ends with an `error` event.
 */
async function streamAnswer(
  deps: ChatRouterDeps,
  res: Response,
  body: ChatBody,
  req: ChatRequestParts,
  first: ServingVersion,
  production: ServingVersion,
  id: string,
  alias: 'production' | 'canary',
  validate: ValidateFunction | null,
  checkJson: boolean,
  gone: AbortController,
  record: (by: ServingVersion | null, a: Answer | null, err: string | null, fellBack: boolean) => void,
) {
  const t0 = performance.now();
  const open = async (v: ServingVersion) => {
    const it = serverOf(deps, v, production).chatStream({ model: v.tag, ...req }, gone.signal);
    const head = await it.next(); // the HTTP answer and the first chunk: errors surface here
    return { it, head };
  };
  const got = await withFallback(deps.log, body.model, first, production, gone.signal, record, open);
  if (!got) return; // the caller went away
  const { version, value: opened, error } = got;
  const fellBack = version !== first;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
  });
  res.write(
    `event: meta\ndata: ${JSON.stringify({ id, model: body.model, version: version.version, alias: fellBack ? 'production' : alias })}\n\n`,
  );
  let content = '';
  let last: { doneReason?: string | null; promptTokens?: number | null; completionTokens?: number | null } = {};
  try {
    for (let chunk = opened.head; !chunk.done; chunk = await opened.it.next()) {
      const c = chunk.value;
      if (c.content) {
        content += c.content;
        res.write(`data: ${JSON.stringify({ content: c.content })}\n\n`);
      }
      if (c.done) last = c;
    }
  } catch (err) {
    if (gone.signal.aborted) return;
    const message = describe(err);
    deps.log.error({ model: body.model, version: version.version, err: message }, 'stream broke off');
    res.write(
      `event: error
data: ${JSON.stringify({ code: 'model_unavailable', message: 'the answer broke off; retry' })}

`,
    );
    res.end();
    record(null, null, error ?? message, fellBack);
    return;
  }
  const schemaValid = checkJson ? matchesSchema(content, validate) : null;
  record(
    version,
    {
      content,
      doneReason: last.doneReason ?? null,
      promptTokens: last.promptTokens ?? null,
      completionTokens: last.completionTokens ?? null,
      schemaValid,
    },
    error,
    fellBack,
  );
  res.write(
    `event: done\ndata: ${JSON.stringify({
      doneReason: last.doneReason ?? null,
      usage: { promptTokens: last.promptTokens ?? null, completionTokens: last.completionTokens ?? null },
      ...(checkJson ? { schemaValid } : {}),
      latencyMs: Math.round((performance.now() - t0) * 100) / 100,
    })}\n\n`,
  );
  res.end();
}
