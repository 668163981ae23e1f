import { performance } from 'node:perf_hooks';
import { Router, type ErrorRequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { Db } from '../db/pool';
import { listModels } from '../db/queries/models';
import type { ChatMessage } from '../domain/conversation';
import { slug } from '../domain/model-config';
import { conversationIdSchema } from '../ingest/metadata';
import { externalId } from '../ingest/text';
import { compileSchema, InvalidSchemaError } from '../llm/json-schema';
import type { ChatOptions } from '../llm/ollama';
import type { Logger } from '../log';
import { assertModelAccess, authenticate, principalOf, requireRole, type Principal } from './auth';
import { jsonBody, strictUrlEncoding } from './body';
import { callerGone, conversation, EVENT_STREAM_HEADERS } from './chat.router';
import {
  answerChat,
  streamChat,
  withinFairUse,
  type ChatCall,
  type ChatEvent,
  type ChatServiceDeps,
} from './chat.service';
import { errorResponse, HttpError } from './errors';
import { parse } from './validate';

/**
 * The OpenAI-compatible surface, under /openai/v1 (beside, never inside, tuneloop's own /v1): an app moves to
 * tuneloop by changing its OpenAI client's base URL and key. POST /chat/completions (plain and streamed) and GET
 * /models, in OpenAI's wire format; errors in OpenAI's shape and status, so the SDKs raise their typed errors.
 * A parameter we cannot honour is refused (400 naming it), never ignored.
 *
 * The end user is the subject (OpenAI's `user`, or the X-Tuneloop-Subject header): routing is sticky per subject and
 * the conversation is recorded under it; a call without one is answered and counted but never becomes training
 * data. The response id is tuneloop's interaction id, which POST /v1/interactions/:id/feedback takes; a
 * conversation id (X-Tuneloop-Conversation-Id, or metadata.conversation_id) is kept with each turn and echoed.
 */

export const OPENAI_BASE = '/openai/v1';

/** Parameters OpenAI defines that tuneloop cannot honour, with what to do instead. */
const UNSUPPORTED = {
  tools: 'tool calling is not supported',
  tool_choice: 'tool calling is not supported',
  parallel_tool_calls: 'tool calling is not supported',
  functions: 'function calling is not supported',
  function_call: 'function calling is not supported',
  audio: 'audio output is not supported',
  modalities: 'only text output is supported: leave modalities out',
  logprobs: 'log probabilities are not supported',
  top_logprobs: 'log probabilities are not supported',
  logit_bias: 'logit_bias is not supported',
  prediction: 'predicted outputs are not supported',
  web_search_options: 'web search is not supported',
  reasoning_effort: 'reasoning effort is not supported',
  service_tier: 'service tiers are not supported',
  store: 'stored completions are not supported: every call is recorded by tuneloop already',
  verbosity: 'verbosity is not supported',
  prompt_cache_key: 'prompt_cache_key is not supported',
  safety_identifier: 'safety_identifier is not supported: the end user goes in `user`',
} as const satisfies Record<string, string>;
type Unsupported = keyof typeof UNSUPPORTED;
const isUnsupported = (key: string): key is Unsupported => Object.hasOwn(UNSUPPORTED, key);

/** A neutral value of an unsupported parameter (n: 1, logprobs: false...) is accepted: it asks for nothing. */
const NEUTRAL: Record<string, (v: unknown) => boolean> = {
  n: (v) => v === 1,
  logprobs: (v) => v === false,
  store: (v) => v === false,
  parallel_tool_calls: (v) => v === undefined,
  modalities: (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text',
};

const textPart = z.object({ type: z.literal('text'), text: z.string() }).strict();
const message = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant'], {
      error: 'expected system, developer, user or assistant (tool messages are not supported)',
    }),
    content: z.union([z.string(), z.array(textPart).min(1)], {
      error: 'expected a string or an array of text parts',
    }),
    name: z.string().max(64).optional(),
  })
  .strict();

const responseFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }).strict(),
  z.object({ type: z.literal('json_object') }).strict(),
  z
    .object({
      type: z.literal('json_schema'),
      json_schema: z
        .object({
          name: z.string().regex(/^[\w-]{1,64}$/, 'letters, digits, _ and -, at most 64'),
          description: z.string().max(10_000).optional(),
          schema: z.record(z.string(), z.unknown()).optional(),
          strict: z.boolean().nullable().optional(),
        })
        .strict(),
    })
    .strict(),
]);

/**
 * Every unsupported parameter may be sent as null, which asks for nothing (parseCompletion refuses any other value
 * first, naming it); the neutral values of those below are in the schema itself.
 */
const unsupportedAsNull = Object.fromEntries(
  Object.entries(UNSUPPORTED).map(([key, why]) => [
    key,
    z
      .null()
      .optional()
      .meta({ description: `${why}: only null (the same as leaving it out) is accepted` }),
  ]),
) as { [K in Unsupported]: z.ZodOptional<z.ZodNull> };

const metadata = z
  .record(z.string().min(1).max(64), z.string().max(512))
  .refine((m) => Object.keys(m).length <= 16, { message: 'at most 16 keys' });

const completionRequest = z
  .object({
    model: slug,
    messages: z.array(message).min(1, 'at least one message').max(1000),
    stream: z.boolean().nullable().optional(),
    stream_options: z
      .object({ include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional() })
      .strict()
      .nullable()
      .optional(),
    temperature: z.number().min(0).max(2).nullable().optional(),
    top_p: z.number().gt(0).max(1).nullable().optional(),
    max_tokens: z.number().int().min(1).max(8192).nullable().optional(),
    max_completion_tokens: z.number().int().min(1).max(8192).nullable().optional(),
    stop: z
      .union([z.string().min(1).max(100), z.array(z.string().min(1).max(100)).max(4)])
      .nullable()
      .optional(),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .nullable()
      .optional(),
    presence_penalty: z.number().min(-2).max(2).nullable().optional(),
    frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
    response_format: responseFormat.optional(),
    user: externalId.optional(),
    metadata: metadata.nullable().optional(),
    ...unsupportedAsNull,
    // The neutral values of parameters we cannot honour (see NEUTRAL).
    n: z.literal(1).optional(),
    logprobs: z.literal(false).nullable().optional(),
    store: z.literal(false).nullable().optional(),
    modalities: z
      .tuple([z.literal('text')])
      .nullable()
      .optional(),
  })
  .strict();
const modelParams = z.object({ model: z.string().max(200) }).strict();

/** What this router validates with: the OpenAPI document (openapi.ts) is generated from these very objects. */
export const openAiSchemas = { completion: completionRequest, modelParams };

/** An error as OpenAI answers it (and its SDKs read it), with the status tuneloop's own routes give. */
export const openAiErrorSchema = z
  .object({
    error: z
      .object({
        message: z.string(),
        type: z.string().meta({ description: 'invalid_request_error, authentication_error, … by status' }),
        param: z.string().nullable().meta({ description: 'The parameter at fault: messages[2].content…' }),
        code: z.string(),
      })
      .strict(),
  })
  .strict();
type CompletionRequest = z.output<typeof completionRequest>;

const SUBJECT_HEADER = 'x-tuneloop-subject';
const CONVERSATION_HEADER = 'x-tuneloop-conversation-id';

export interface OpenAiRouterDeps extends ChatServiceDeps {
  db: Db;
  bodyLimit: string;
  authCacheMs?: number;
}

export function createOpenAiRouter(deps: OpenAiRouterDeps) {
  const router = Router();
  router.use(authenticate(deps.db, { cacheMs: deps.authCacheMs }));
  router.use(strictUrlEncoding);
  router.use(jsonBody(deps.bodyLimit));

  router.post('/chat/completions', requireRole('app'), async (req, res) => {
    const startedAt = performance.now();
    const signal = callerGone(res);
    const principal = principalOf(req);
    const body = parseCompletion(req.body, req.is('application/json'));
    assertModelAccess(principal, body.model, 'model');
    const call = toCall(body, principal, req.get(SUBJECT_HEADER), req.get(CONVERSATION_HEADER), signal);
    const created = Math.floor(Date.now() / 1000);
    const conversationOf = call.metadata?.conversation_id;
    if (typeof conversationOf === 'string') res.setHeader(CONVERSATION_HEADER, conversationOf);
    if (body.stream) {
      await withinFairUse(deps, call, () => streamChat(deps, { ...call, startedAt }, chunkWriter(res, body, created)));
      return;
    }
    const answer = await withinFairUse(deps, call, () => answerChat(deps, { ...call, startedAt }));
    if (!answer) return; // the caller went away
    res.setHeader('x-tuneloop-version', answer.version);
    res.setHeader('x-tuneloop-alias', answer.alias);
    const usage = {
      prompt_tokens: answer.usage.promptTokens ?? 0,
      completion_tokens: answer.usage.completionTokens ?? 0,
      total_tokens: (answer.usage.promptTokens ?? 0) + (answer.usage.completionTokens ?? 0),
    };
    res.json({
      id: answer.id,
      object: 'chat.completion',
      created,
      model: body.model,
      system_fingerprint: answer.version,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: answer.message.content, refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: finishReason(answer.doneReason),
        },
      ],
      usage,
    });
  });

  router.get('/models', requireRole('app', 'operator'), async (req, res) => {
    const p = principalOf(req);
    res.json({ object: 'list', data: (await visibleModels(deps.db, p)).map(modelObject) });
  });

  router.get('/models/:model', requireRole('app', 'operator'), async (req, res) => {
    const p = principalOf(req);
    const { model } = parse(modelParams, req, 'params');
    const found = (await visibleModels(deps.db, p)).find((m) => m.id === model);
    if (!found) throw new HttpError(404, 'model_not_found', `The model '${model}' does not exist`, 'model');
    res.json(modelObject(found));
  });

  router.use((req, _res, next) => {
    next(new HttpError(404, 'not_found', `no route for ${req.method} ${OPENAI_BASE}${req.path}`));
  });
  router.use(openAiErrors(deps.log));
  return router;
}

async function visibleModels(db: Db, p: Principal) {
  const models = await listModels(db, p.models ?? undefined);
  return p.appId ? models.filter((m) => m.app_id === p.appId) : models;
}

function modelObject(m: { id: string; app_id: string; created_at: Date }) {
  return { id: m.id, object: 'model', created: Math.floor(m.created_at.getTime() / 1000), owned_by: m.app_id };
}

/** The request checked: unsupported parameters first (named), then the schema. */
function parseCompletion(raw: unknown, isJson: string | false | null): CompletionRequest {
  if (!isJson || typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new HttpError(415, 'unsupported_media_type', 'send the body as a JSON object (application/json)', 'body');
  }
  for (const [key, value] of Object.entries(raw)) {
    if (value === null && isUnsupported(key)) continue;
    if (key in NEUTRAL && NEUTRAL[key]!(value)) continue;
    if (isUnsupported(key) || key === 'n') {
      const why = key === 'n' ? 'only one choice per call is supported (n: 1)' : UNSUPPORTED[key as Unsupported];
      throw new HttpError(400, 'unsupported_parameter', `Unsupported parameter: '${key}': ${why}`, key);
    }
  }
  const parsed = completionRequest.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const keys = issue.code === 'unrecognized_keys' ? (issue as { keys?: string[] }).keys : undefined;
    const param = paramOf(keys?.length ? [...issue.path, keys[0]!] : issue.path);
    const message = keys?.length ? `Unrecognized request argument supplied: ${keys[0]}` : `${param}: ${issue.message}`;
    throw new HttpError(400, keys?.length ? 'unknown_parameter' : 'invalid_value', message, param);
  }
  const body = parsed.data;
  if (body.max_tokens != null && body.max_completion_tokens != null && body.max_tokens !== body.max_completion_tokens) {
    throw new HttpError(
      400,
      'invalid_value',
      'max_tokens and max_completion_tokens differ: send one of them',
      'max_completion_tokens',
    );
  }
  if (body.stream_options && !body.stream) {
    throw new HttpError(400, 'invalid_value', 'stream_options is only allowed with stream: true', 'stream_options');
  }
  const rf = body.response_format;
  if (rf?.type === 'json_schema') {
    if (!rf.json_schema.schema) {
      throw new HttpError(400, 'invalid_value', 'response_format.json_schema.schema is required', 'response_format');
    }
    try {
      compileSchema(rf.json_schema.schema);
    } catch (err) {
      if (!(err instanceof InvalidSchemaError)) throw err;
      throw new HttpError(
        400,
        'invalid_value',
        `response_format.json_schema.schema: ${err.message}`,
        'response_format',
      );
    }
  }
  return body;
}

/** OpenAI names a parameter by its path: messages[2].content. */
function paramOf(path: PropertyKey[]): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join('');
}

/** The OpenAI request as the chat service's call: messages normalised, subject and conversation found. */
function toCall(
  body: CompletionRequest,
  principal: Principal,
  subjectHeader: string | undefined,
  conversationHeader: string | undefined,
  signal: AbortSignal,
): Omit<ChatCall, 'startedAt'> {
  const messages = normalise(body.messages);
  const checked = conversation.safeParse(messages);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    const param = paramOf(['messages', ...issue.path]);
    throw new HttpError(400, 'invalid_value', `${param}: ${issue.message}`, param);
  }
  const fromHeader = subjectHeader === undefined ? undefined : externalId.safeParse(subjectHeader);
  if (fromHeader && !fromHeader.success) {
    throw new HttpError(400, 'invalid_value', `${SUBJECT_HEADER}: ${fromHeader.error.issues[0]!.message}`, 'user');
  }
  if (fromHeader && body.user !== undefined && body.user !== fromHeader.data) {
    throw new HttpError(400, 'invalid_value', `user and the ${SUBJECT_HEADER} header name different users`, 'user');
  }
  const subject = body.user ?? fromHeader?.data ?? null;
  const conv = conversationHeader ?? body.metadata?.conversation_id;
  if (conv !== undefined) {
    const ok = conversationIdSchema.safeParse(conv);
    if (!ok.success) {
      throw new HttpError(400, 'invalid_value', `conversation id: ${ok.error.issues[0]!.message}`, 'metadata');
    }
  }
  const rf = body.response_format;
  const stop = typeof body.stop === 'string' ? [body.stop] : (body.stop ?? undefined);
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
  const options: ChatOptions = {
    ...(body.temperature != null ? { temperature: body.temperature } : {}),
    ...(body.top_p != null ? { top_p: body.top_p } : {}),
    ...(body.seed != null ? { seed: body.seed } : {}),
    ...(maxTokens !== undefined ? { num_predict: maxTokens } : {}),
    ...(stop?.length ? { stop } : {}),
    ...(body.presence_penalty != null ? { presence_penalty: body.presence_penalty } : {}),
    ...(body.frequency_penalty != null ? { frequency_penalty: body.frequency_penalty } : {}),
  };
  return {
    principal,
    model: body.model,
    subject,
    messages: checked.data,
    format: rf?.type === 'json_object' ? 'json' : rf?.type === 'json_schema' ? rf.json_schema.schema : undefined,
    options,
    metadata: {
      ...(body.metadata ?? {}),
      ...(conv !== undefined ? { conversation_id: conv } : {}),
      surface: 'openai',
    },
    signal,
  };
}

/** developer turns are system turns; leading system turns become one; text parts are joined. */
function normalise(messages: CompletionRequest['messages']): ChatMessage[] {
  const text = (c: string | { text: string }[]) => (typeof c === 'string' ? c : c.map((p) => p.text).join(''));
  const out: ChatMessage[] = [];
  for (const m of messages) {
    const role = m.role === 'developer' ? 'system' : m.role;
    const content = text(m.content);
    const last = out.at(-1);
    if (role === 'system' && last?.role === 'system' && out.length === 1) last.content += `\n\n${content}`;
    else out.push({ role, content });
  }
  return out;
}

function finishReason(doneReason: string | null | undefined): 'stop' | 'length' | 'content_filter' {
  return doneReason === 'length' ? 'length' : doneReason === 'content_filter' ? 'content_filter' : 'stop';
}

/** Server-sent chunks as OpenAI sends them: role first, content deltas, the finish, usage if asked, [DONE]. */
function chunkWriter(res: Response, body: CompletionRequest, created: number): (e: ChatEvent) => void {
  let id = '';
  let fingerprint = '';
  const frame = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({
      id,
      object: 'chat.completion.chunk',
      created,
      model: body.model,
      system_fingerprint: fingerprint,
      choices,
      ...extra,
    })}\n\n`;
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    frame([{ index: 0, delta, logprobs: null, finish_reason: finish }]);
  return (e) => {
    switch (e.event) {
      case 'meta':
        id = e.id;
        fingerprint = e.version;
        res.writeHead(200, {
          ...EVENT_STREAM_HEADERS,
          'x-tuneloop-version': e.version,
          'x-tuneloop-alias': e.alias,
        });
        res.write(chunk({ role: 'assistant', content: '' }, null));
        return;
      case 'content':
        res.write(chunk({ content: e.content }, null));
        return;
      case 'done': {
        res.write(chunk({}, finishReason(e.doneReason)));
        if (body.stream_options?.include_usage) {
          const p = e.usage.promptTokens ?? 0;
          const c = e.usage.completionTokens ?? 0;
          res.write(frame([], { usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c } }));
        }
        res.end('data: [DONE]\n\n');
        return;
      }
      case 'error':
        // Mid-stream: OpenAI's clients raise an error for a chunk that carries one.
        res.end(
          `data: ${JSON.stringify({ error: { message: e.message, type: 'server_error', param: null, code: e.code } })}\n\n`,
        );
        return;
    }
  };
}

const TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'invalid_request_error',
  415: 'invalid_request_error',
  422: 'invalid_request_error',
  429: 'rate_limit_error',
};

/** Any error in OpenAI's shape: {error: {message, type, param, code}}, with the same status as tuneloop's own. */
export function openAiErrors(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const { status, body, retryAfterS } = errorResponse(err);
    if (retryAfterS !== undefined) res.setHeader('Retry-After', String(retryAfterS));
    if (status >= 500) (req.log ?? log).error({ err }, 'request failed');
    if (res.headersSent) {
      res.end();
      return;
    }
    const type = TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
    const param = body.error.field ? body.error.field.replace(/^(body|query|params)\./, '') : null;
    const answer: z.output<typeof openAiErrorSchema> = {
      error: { message: body.error.message, type, param, code: body.error.code },
    };
    res.status(status).json(answer);
  };
}
