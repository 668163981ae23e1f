import { z } from 'zod';
import pkg from '../../package.json' with { type: 'json' };
import type { Role } from '../db/database';
import { chatSchemas } from './chat.router';
import { errorBodySchema } from './errors';
import { interactionsSchemas } from './interactions.router';
import { modelsSchemas } from './models.router';
import { OPENAI_BASE, openAiErrorSchema, openAiSchemas } from './openai.router';
import { runsSchemas } from './runs.router';
import { schedulesSchemas } from './schedules.router';
import { subjectsSchemas } from './subjects.router';

/**
 * The OpenAPI 3.1 document of the API createApp builds, served at GET /openapi.json and rendered at /docs. Every
 * parameter and request body schema is generated (zod 4's toJSONSchema, JSON Schema 2020-12 as OpenAPI 3.1 uses) from
 * the very zod objects the routers validate with, as the client sends them (`io: 'input'`: before coercion,
 * defaults and transforms). The table below says what zod cannot: paths, roles, summaries and the answers;
 * tests/api/openapi.test.ts holds it to the routes the app registers, both ways.
 */

type Method = 'get' | 'post' | 'put' | 'delete';

/** What an answer carries. */
type Content = 'json' | 'json-or-events' | 'text' | 'html' | 'none';

interface Success {
  description: string;
  content?: Content;
  /** The answer names where to look next in its Location header. */
  location?: true;
}

export interface ApiOperation {
  method: Method;
  /** As express routes it: `/v1/runs/:id`. */
  path: string;
  tag: string;
  summary: string;
  description?: string;
  /** Who may call it (an admin key may call everything); absent: no key needed. */
  roles?: readonly Role[];
  params?: z.ZodObject;
  query?: z.ZodObject;
  /** A JSON body in one of `oneOf`'s shapes, or `schema`'s; `optional` when it may be left out. */
  body?: ({ schema: z.ZodType } | { oneOf: z.ZodType[] }) & { optional?: true };
  /** Its answers when it did what was asked (and those in a shape of their own, as /readyz's 503). */
  answers: Record<number, Success>;
  /** The errors particular to this route, status → when; the ones every such route can give are added. */
  errors?: Record<number, string>;
  /** The OpenAI-compatible surface: errors in OpenAI's shape. */
  openAi?: true;
  /** Valid values, shown in the document (and the tests' starting point for invalid ones). */
  example?: { params?: Record<string, string>; query?: Record<string, unknown>; body?: unknown };
}

const ANYONE_WITH_A_KEY: readonly Role[] = ['app', 'operator'];
const { interaction, batch, feedback, feedbackParams, feedbackQuery, conversationParams } = interactionsSchemas;

const RUN_ID = '0193f2a4-7c1e-7b3a-9d2f-5a8e1c0b6d47';
const MODEL = 'support-bot';

/** Every operation of the API, in the order the app mounts its routers. */
export const API_OPERATIONS: readonly ApiOperation[] = [
  {
    method: 'get',
    path: '/healthz',
    tag: 'health',
    summary: 'Says the process is up',
    answers: { 200: { description: '`{ "status": "ok" }`' } },
  },
  {
    method: 'get',
    path: '/readyz',
    tag: 'health',
    summary: 'Says whether the database, the workflow engine and the blob store answer',
    answers: {
      200: { description: 'Ready: every check passed.' },
      503: { description: 'Not ready: the checks say which dependency failed.' },
    },
  },
  {
    method: 'get',
    path: '/openapi.json',
    tag: 'docs',
    summary: 'Answers this OpenAPI document',
    answers: { 200: { description: 'The OpenAPI 3.1 document.' } },
  },
  {
    method: 'get',
    path: '/docs',
    tag: 'docs',
    summary: 'Renders this document (Swagger UI)',
    description: 'Served with every asset from this origin, under a Content-Security-Policy of `default-src self`.',
    answers: {
      200: { description: 'The page.', content: 'html' },
      301: { description: 'To `docs/`.', content: 'none', location: true },
    },
  },
  {
    method: 'get',
    path: '/metrics',
    tag: 'metrics',
    summary: 'Exposes Prometheus metrics: request and inference latency, calls, fallbacks, runs, canary shares',
    roles: ['operator'],
    answers: { 200: { description: 'The Prometheus text format.', content: 'text' } },
  },
  {
    method: 'post',
    path: `${OPENAI_BASE}/chat/completions`,
    tag: 'openai',
    summary: 'Answers a chat completion in OpenAI’s wire format, plain or streamed',
    description:
      'A parameter tuneloop cannot honour is refused (400 naming it), never ignored. The end user is the subject ' +
      '(`user`, or the X-Tuneloop-Subject header): routing is sticky per subject and the conversation is recorded ' +
      'under it. The response id is the interaction id that POST /v1/interactions/{id}/feedback takes.',
    roles: ['app'],
    openAi: true,
    body: { schema: openAiSchemas.completion },
    answers: {
      200: {
        description: 'A chat.completion, or with `stream: true` chat.completion.chunk events.',
        content: 'json-or-events',
      },
    },
    errors: {
      400: 'a parameter fails its schema, is unknown, or cannot be honoured',
      403: 'the key may not use this model',
      404: 'no such model',
      429: 'over the key’s or the model’s fair use (Retry-After)',
      502: 'the model server or the hosted model could not answer',
      503: 'no version serving yet, the hosted model rate-limited, or the database unavailable',
      504: 'the model did not answer in time',
    },
    example: {
      body: { model: MODEL, messages: [{ role: 'user', content: 'How do I reset my password?' }], user: 'user-42' },
    },
  },
  {
    method: 'get',
    path: `${OPENAI_BASE}/models`,
    tag: 'openai',
    summary: 'Lists the models the key may use, as OpenAI lists models',
    roles: ANYONE_WITH_A_KEY,
    openAi: true,
    answers: { 200: { description: '`{ "object": "list", "data": [model…] }`' } },
  },
  {
    method: 'get',
    path: `${OPENAI_BASE}/models/:model`,
    tag: 'openai',
    summary: 'Describes one model, as OpenAI does',
    roles: ANYONE_WITH_A_KEY,
    openAi: true,
    params: openAiSchemas.modelParams,
    answers: { 200: { description: 'A model object.' } },
    errors: { 404: 'no such model, or not one this key may use' },
    example: { params: { model: MODEL } },
  },
  {
    method: 'post',
    path: '/v1/interactions',
    tag: 'interactions',
    summary: 'Records one interaction, or a batch of them, in one transaction',
    description:
      'A body with `interactions` is a batch, anything else one interaction, in any of three shapes: chat ' +
      '`messages`, `prompt`+`completion`, or `instruction`(+`input`)+`output`. A retried id is a duplicate, stored once.',
    roles: ['app'],
    body: { oneOf: [interaction, batch] },
    answers: {
      201: { description: 'Stored (at least one new interaction).' },
      200: { description: 'Nothing new: every interaction was a duplicate or of an erased subject.' },
    },
    errors: {
      403: 'the key may not write to this model',
      404: 'no such model',
      410: 'the (single) interaction’s subject was erased; it is not stored again',
      503: 'the database is unavailable, or an erasure ran meanwhile: retry (Retry-After)',
    },
    example: {
      body: {
        id: 'chat-1234',
        model: MODEL,
        subject: 'user-42',
        messages: [
          { role: 'user', content: 'How do I reset my password?' },
          { role: 'assistant', content: 'Open Settings, then Security, then Reset password.' },
        ],
      },
    },
  },
  {
    method: 'post',
    path: '/v1/interactions/:id/feedback',
    tag: 'feedback',
    summary: 'Records a user’s feedback (thumb, rating, correction) on one interaction',
    description: 'The interaction is named by tuneloop’s id or the app’s own; a retried feedback `id` is stored once.',
    roles: ['app'],
    params: feedbackParams,
    query: feedbackQuery,
    body: { schema: feedback },
    answers: { 201: { description: 'Stored.' }, 200: { description: 'A duplicate: already stored.' } },
    errors: {
      403: 'the key may not use this model',
      404: 'no such interaction within the key’s reach',
      409: 'the id is used by several models of this key: name one with ?model=',
    },
    example: { params: { id: 'chat-1234' }, query: { model: MODEL }, body: { id: 'fb-1', thumbs: 'down', rating: 2 } },
  },
  {
    method: 'post',
    path: '/v1/conversations/:id/feedback',
    tag: 'feedback',
    summary: 'Records the same feedback on every turn of a conversation',
    description:
      'The conversation id is the one the app recorded with each turn (`metadata.conversation_id`, or the OpenAI ' +
      'surface’s). A correction replaces one answer: give it on that interaction instead.',
    roles: ['app'],
    params: conversationParams,
    query: feedbackQuery,
    body: { schema: feedback },
    answers: { 201: { description: 'Stored.' }, 200: { description: 'A duplicate on every turn: already stored.' } },
    errors: {
      400: 'a field fails its schema, or a correction was given',
      403: 'the key may not use this model',
      404: 'no such conversation within the key’s reach',
      409: 'the id is used by several models of this key: name one with ?model=',
      422: 'too many turns: give feedback on its interactions one by one',
    },
    example: { params: { id: 'conv-77' }, query: { model: MODEL }, body: { id: 'fb-2', thumbs: 'up' } },
  },
  {
    method: 'put',
    path: '/v1/subjects/:id/consent',
    tag: 'subjects',
    summary: 'Sets whether a subject (an app’s user) consents to training on their conversations',
    description: 'An app key speaks for its own app; an admin names the app with ?app=.',
    roles: ['app'],
    params: subjectsSchemas.subjectParams,
    query: subjectsSchemas.appQuery,
    body: { schema: subjectsSchemas.consent },
    answers: { 200: { description: 'The subject’s consent as stored.' } },
    errors: {
      400: 'a field fails its schema, or ?app= is missing for a key not bound to an app',
      403: 'the app is not this key’s',
      404: 'no such app',
    },
    example: { params: { id: 'user-42' }, body: { training: true, policyVersion: '2025-01' } },
  },
  {
    method: 'delete',
    path: '/v1/subjects/:id',
    tag: 'subjects',
    summary: 'Erases a subject: their interactions, feedback and every stored dataset row',
    description:
      'PostgreSQL first, in one transaction; then the datasets that held their rows are rewritten by a workflow. ' +
      'The answer waits for it for a while, then says 202 and where to look. Model versions trained on their data ' +
      'are flagged.',
    roles: ['admin'],
    params: subjectsSchemas.subjectParams,
    query: subjectsSchemas.appQuery,
    answers: {
      200: { description: 'Erased everywhere: what was deleted and rewritten.' },
      202: { description: 'Erased from the database; datasets still being rewritten.', location: true },
    },
    errors: {
      400: 'a field fails its schema, or ?app= is missing',
      404: 'no such app, or no such subject of it',
    },
    example: { params: { id: 'user-42' }, query: { app: 'helpdesk' } },
  },
  {
    method: 'get',
    path: '/v1/erasures/:id',
    tag: 'subjects',
    summary: 'Says how far an erasure has come',
    roles: ['admin'],
    params: subjectsSchemas.erasureParams,
    answers: { 200: { description: 'The erasure and what it touched.' } },
    errors: { 404: 'no such erasure' },
    example: { params: { id: RUN_ID } },
  },
  {
    method: 'post',
    path: '/v1/runs',
    tag: 'runs',
    summary: 'Starts a training run of a model now',
    roles: ['operator'],
    body: { schema: runsSchemas.start },
    answers: { 202: { description: 'Started (or already going): the run’s id.', location: true } },
    errors: { 404: 'no such model' },
    example: { body: { model: MODEL } },
  },
  {
    method: 'get',
    path: '/v1/runs',
    tag: 'runs',
    summary: 'Lists runs, newest first, of the models the key may see',
    roles: ANYONE_WITH_A_KEY,
    query: runsSchemas.list,
    answers: { 200: { description: '`{ "runs": [run…] }`' } },
    errors: { 403: 'the key may not see this model' },
    example: { query: { model: MODEL, status: 'running', limit: 20 } },
  },
  {
    method: 'get',
    path: '/v1/runs/:id',
    tag: 'runs',
    summary: 'Describes one run: its stages, live progress while it runs, and its quality report',
    roles: ANYONE_WITH_A_KEY,
    params: runsSchemas.runParams,
    answers: { 200: { description: '`{ "run": …, "live": boolean }`' } },
    errors: { 404: 'no such run within the key’s reach' },
    example: { params: { id: RUN_ID } },
  },
  {
    method: 'get',
    path: '/v1/runs/:id/training-log',
    tag: 'runs',
    summary: 'Returns the train stage’s curves: the loss of every logged step, the held-out loss of every evaluation',
    roles: ANYONE_WITH_A_KEY,
    params: runsSchemas.runParams,
    answers: { 200: { description: 'The run’s training log.' } },
    errors: { 404: 'no such run within the key’s reach' },
    example: { params: { id: RUN_ID } },
  },
  {
    method: 'post',
    path: '/v1/runs/:id/cancel',
    tag: 'runs',
    summary: 'Cancels a running run',
    roles: ['operator'],
    params: runsSchemas.runParams,
    answers: { 202: { description: 'Cancelling.' } },
    errors: { 404: 'no such run', 409: 'the run is not running' },
    example: { params: { id: RUN_ID } },
  },
  {
    method: 'post',
    path: '/v1/runs/:id/approve',
    tag: 'runs',
    summary: 'Answers a canary waiting for approval before 100 %: go on, or roll back',
    roles: ['operator'],
    params: runsSchemas.runParams,
    body: { schema: runsSchemas.approve },
    answers: { 200: { description: 'The canary’s state once the run has taken the answer in.' } },
    errors: { 404: 'no such run', 409: 'the run is not running, or not waiting for an approval' },
    example: { params: { id: RUN_ID }, body: { approved: true, reason: 'canary metrics look good' } },
  },
  {
    method: 'post',
    path: '/v1/chat',
    tag: 'chat',
    summary: 'Answers a conversation with the model’s serving version, plain or as server-sent events',
    description:
      'Routing (production, canary, fallback to the hosted incumbent) is sticky per subject, and the call is ' +
      'recorded under it.',
    roles: ['app'],
    body: { schema: chatSchemas.chat },
    answers: {
      200: { description: 'The answer, or with `stream: true` server-sent events.', content: 'json-or-events' },
    },
    errors: {
      403: 'the key may not use this model',
      404: 'no such model',
      429: 'over the key’s or the model’s fair use (Retry-After)',
      502: 'the model server or the hosted model could not answer',
      503: 'no version serving yet, the hosted model rate-limited, or the database unavailable',
      504: 'the model did not answer in time',
    },
    example: {
      body: { model: MODEL, subject: 'user-42', messages: [{ role: 'user', content: 'How do I reset my password?' }] },
    },
  },
  {
    method: 'get',
    path: '/v1/models',
    tag: 'models',
    summary: 'Lists the models the key may see, with their aliases',
    roles: ANYONE_WITH_A_KEY,
    answers: { 200: { description: '`{ "models": [model…] }`' } },
  },
  {
    method: 'get',
    path: '/v1/models/:model',
    tag: 'models',
    summary: 'Describes a model: its configuration, versions, aliases and their history',
    roles: ANYONE_WITH_A_KEY,
    params: modelsSchemas.modelParams,
    answers: { 200: { description: 'The model.' } },
    errors: { 403: 'the key may not see this model', 404: 'no such model' },
    example: { params: { model: MODEL } },
  },
  {
    method: 'get',
    path: '/v1/training-status',
    tag: 'models',
    summary: 'Says where a model’s training loop stands: runs, what serves now, the next scheduled run',
    roles: ANYONE_WITH_A_KEY,
    query: modelsSchemas.trainingStatusQuery,
    answers: { 200: { description: 'The training status (snake_case, the shape apps already use).' } },
    errors: { 403: 'the key may not see this model', 404: 'no such model' },
    example: { query: { model: MODEL } },
  },
  {
    method: 'get',
    path: '/v1/models/:model/migration',
    tag: 'models',
    summary: 'Reports the move off the hosted incumbent over the last days: share served locally, latency, cost',
    roles: ANYONE_WITH_A_KEY,
    params: modelsSchemas.modelParams,
    query: modelsSchemas.migrationQuery,
    answers: { 200: { description: 'The migration report.' } },
    errors: { 403: 'the key may not see this model', 404: 'no such model' },
    example: { params: { model: MODEL }, query: { days: 30 } },
  },
  {
    method: 'post',
    path: '/v1/models/:model/rollback',
    tag: 'models',
    summary: 'Rolls production back to the previous version',
    roles: ['operator'],
    params: modelsSchemas.modelParams,
    body: { schema: modelsSchemas.rollback },
    answers: { 200: { description: 'What serves now and what served before.' } },
    errors: { 404: 'no such model', 409: 'nothing to roll back to' },
    example: { params: { model: MODEL }, body: { reason: 'answers got worse after v7' } },
  },
  {
    method: 'get',
    path: '/v1/schedules',
    tag: 'schedules',
    summary: 'Lists every model’s nightly schedule',
    roles: ['operator'],
    answers: { 200: { description: '`{ "schedules": [schedule…] }`' } },
  },
  {
    method: 'get',
    path: '/v1/models/:model/schedule',
    tag: 'schedules',
    summary: 'Describes a model’s nightly schedule: when, paused or not, next and recent runs',
    roles: ['operator'],
    params: schedulesSchemas.modelParams,
    answers: { 200: { description: '`{ "schedule": … }`' } },
    errors: { 404: 'no such model, or it has no schedule' },
    example: { params: { model: MODEL } },
  },
  {
    method: 'put',
    path: '/v1/models/:model/schedule',
    tag: 'schedules',
    summary: 'Creates or changes a model’s nightly schedule',
    description: 'What the body leaves out keeps its current value (the default, for a new schedule).',
    roles: ['operator'],
    params: schedulesSchemas.modelParams,
    body: { schema: schedulesSchemas.settings },
    answers: { 200: { description: '`{ "schedule": … }`' } },
    errors: { 404: 'no such model' },
    example: { params: { model: MODEL }, body: { at: '02:30', timezone: 'Europe/Berlin', catchupWindowMinutes: 360 } },
  },
  {
    method: 'delete',
    path: '/v1/models/:model/schedule',
    tag: 'schedules',
    summary: 'Deletes a model’s nightly schedule (a run it started goes on)',
    roles: ['operator'],
    params: schedulesSchemas.modelParams,
    answers: { 204: { description: 'Deleted.', content: 'none' } },
    errors: { 404: 'no such model, or it has no schedule' },
    example: { params: { model: MODEL } },
  },
  {
    method: 'post',
    path: '/v1/models/:model/schedule/pause',
    tag: 'schedules',
    summary: 'Pauses a model’s nightly schedule, saying why',
    roles: ['operator'],
    params: schedulesSchemas.modelParams,
    body: { schema: schedulesSchemas.pause },
    answers: { 200: { description: '`{ "schedule": … }`' } },
    errors: { 404: 'no such model, or it has no schedule' },
    example: { params: { model: MODEL }, body: { reason: 'the GPU host is down for maintenance' } },
  },
  {
    method: 'post',
    path: '/v1/models/:model/schedule/resume',
    tag: 'schedules',
    summary: 'Resumes a paused nightly schedule',
    roles: ['operator'],
    params: schedulesSchemas.modelParams,
    body: { schema: schedulesSchemas.resume, optional: true },
    answers: { 200: { description: '`{ "schedule": … }`' } },
    errors: { 404: 'no such model, or it has no schedule' },
    example: { params: { model: MODEL }, body: { reason: 'the GPU host is back' } },
  },
  {
    method: 'post',
    path: '/v1/models/:model/schedule/trigger',
    tag: 'schedules',
    summary: 'Starts the schedule’s run now (skipped if one of the model’s runs is going)',
    roles: ['operator'],
    params: schedulesSchemas.modelParams,
    body: { schema: schedulesSchemas.trigger, optional: true },
    answers: { 202: { description: '`{ "schedule": … }`' } },
    errors: { 404: 'no such model, or it has no schedule', 409: 'the schedule is paused: send force: true' },
    example: { params: { model: MODEL }, body: { force: false } },
  },
  {
    method: 'post',
    path: '/v1/models/:model/schedule/backfill',
    tag: 'schedules',
    summary: 'Takes the runs the schedule would have started between two past times (one of them)',
    roles: ['operator'],
    params: schedulesSchemas.modelParams,
    body: { schema: schedulesSchemas.backfill },
    answers: { 202: { description: '`{ "schedule": … }`' } },
    errors: { 404: 'no such model, or it has no schedule', 409: 'the schedule is paused: send force: true' },
    example: {
      params: { model: MODEL },
      body: { from: '2025-01-01T00:00:00Z', to: '2025-01-03T00:00:00Z', force: false },
    },
  },
];

/** Names of the request bodies' schemas under components.schemas. */
const BODY_SCHEMAS = new Map<z.ZodType, string>([
  [interaction, 'Interaction'],
  [batch, 'InteractionBatch'],
  [feedback, 'Feedback'],
  [subjectsSchemas.consent, 'Consent'],
  [runsSchemas.start, 'RunStart'],
  [runsSchemas.approve, 'RunApproval'],
  [chatSchemas.chat, 'Chat'],
  [modelsSchemas.rollback, 'Rollback'],
  [schedulesSchemas.settings, 'ScheduleSettings'],
  [schedulesSchemas.pause, 'SchedulePause'],
  [schedulesSchemas.resume, 'ScheduleResume'],
  [schedulesSchemas.trigger, 'ScheduleTrigger'],
  [schedulesSchemas.backfill, 'ScheduleBackfill'],
  [openAiSchemas.completion, 'ChatCompletionRequest'],
]);

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad request',
  401: 'No valid API key',
  403: 'Forbidden',
  404: 'Not found',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload too large',
  415: 'Unsupported media type',
  422: 'Unprocessable',
  429: 'Too many requests',
  502: 'Bad gateway',
  503: 'Unavailable',
  504: 'Gateway timeout',
};

type JsonSchema = Record<string, unknown>;

/**
 * A zod schema as JSON Schema 2020-12. A z.custom has no JSON Schema of its own: it carries one in `.meta()` (as
 * ingest/metadata.ts does); one that does not becomes `{}`, which the tests refuse for a property.
 */
const jsonSchemaOptions = (io: 'input' | 'output') =>
  ({ io, target: 'draft-2020-12', unrepresentable: 'any', reused: 'inline', cycles: 'throw' }) as const;

function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output' = 'input'): JsonSchema {
  const { $schema: _, ...out } = z.toJSONSchema(schema, jsonSchemaOptions(io)) as JsonSchema;
  if ('$defs' in out) throw new Error('a parameter schema with $defs cannot be inlined in the document');
  return out;
}

/** The request bodies' schemas, in one pass so that one that holds another refers to it (a batch, its items). */
function bodyComponents(): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const [schema, id] of BODY_SCHEMAS) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, {
    ...jsonSchemaOptions('input'),
    uri: (id) => `#/components/schemas/${id}`,
  }) as { schemas: Record<string, JsonSchema> };
  return Object.fromEntries(
    Object.entries(schemas).map(([id, { $schema: _, $id: _id, ...schema }]) => {
      if ('$defs' in schema) throw new Error(`schema ${id}: $defs are not expected here`);
      return [id, schema];
    }),
  );
}

const ref = (schema: z.ZodType) => {
  const id = BODY_SCHEMAS.get(schema);
  if (!id) throw new Error('a request body schema without a name in BODY_SCHEMAS');
  return { $ref: `#/components/schemas/${id}` };
};

/** `/v1/runs/:id` → `/v1/runs/{id}`. */
export const openApiPath = (path: string) => path.replace(/:(\w+)/g, '{$1}');

/** `post /v1/runs/:id/approve` → `postV1RunsByIdApprove`. */
const operationId = (op: ApiOperation) =>
  op.method +
  op.path
    .split('/')
    .map((segment) =>
      segment.startsWith(':')
        ? `By${cap(segment.slice(1))}`
        : segment
            .split(/[^A-Za-z0-9]+/)
            .map(cap)
            .join(''),
    )
    .join('');
const cap = (w: string) => (w ? w[0]!.toUpperCase() + w.slice(1) : '');

/** Roles that may call it: admin may call everything. */
const rolesOf = (op: ApiOperation): Role[] | null => (op.roles ? [...new Set<Role>([...op.roles, 'admin'])] : null);

/** Every error the operation can answer: its own, and those of its authentication, validation and body parsing. */
function errorsOf(op: ApiOperation): Record<number, string> {
  const roles = rolesOf(op);
  const out: Record<number, string> = {};
  if (roles) {
    // /v1 and the OpenAI surface check the URL's encoding before any route: every route of theirs can say 400.
    if (op.params || op.query || op.body) out[400] = 'a parameter or field fails its schema (`field` names it)';
    else if (op.openAi || op.path.startsWith('/v1/')) out[400] = 'the path or query is not valid percent-encoded UTF-8';
    out[401] = 'no key, or not a valid one';
    if (roles.length < 3) out[403] = `the key’s role is not ${roles.join(' or ')}`;
    out[503] = 'the database is unavailable: retry shortly (Retry-After)';
  }
  if (op.body) {
    out[413] = 'the body is over the size limit';
    out[415] = 'the body is not JSON in UTF-8';
  }
  return { ...out, ...op.errors };
}

function parametersOf(op: ApiOperation): JsonSchema[] {
  const templated = [...op.path.matchAll(/:(\w+)/g)].map((m) => m[1]!);
  const params = op.params ? jsonSchemaOf(op.params) : { properties: {} };
  const declared = Object.keys(params.properties as object);
  if (templated.join() !== declared.join())
    throw new Error(`${op.method} ${op.path}: path parameters ${templated} but a schema for ${declared}`);
  const out: JsonSchema[] = declared.map((name) => ({
    name,
    in: 'path',
    required: true,
    schema: (params.properties as Record<string, JsonSchema>)[name],
    ...(op.example?.params?.[name] !== undefined ? { example: op.example.params[name] } : {}),
  }));
  if (op.query) {
    const query = jsonSchemaOf(op.query);
    const required = new Set((query.required as string[] | undefined) ?? []);
    for (const [name, schema] of Object.entries(query.properties as Record<string, JsonSchema>)) {
      out.push({
        name,
        in: 'query',
        required: required.has(name),
        schema,
        ...(op.example?.query?.[name] !== undefined ? { example: op.example.query[name] } : {}),
      });
    }
  }
  return out;
}

function successContent(content: Content = 'json'): Record<string, unknown> | undefined {
  const json = { 'application/json': { schema: { type: 'object' } } };
  switch (content) {
    case 'json':
      return json;
    case 'json-or-events':
      return { ...json, 'text/event-stream': { schema: { type: 'string' } } };
    case 'text':
      return { 'text/plain': { schema: { type: 'string' } } };
    case 'html':
      return { 'text/html': { schema: { type: 'string' } } };
    case 'none':
      return undefined;
  }
}

function operationOf(op: ApiOperation) {
  const roles = rolesOf(op);
  const errorSchema = { $ref: `#/components/schemas/${op.openAi ? 'OpenAiError' : 'Error'}` };
  const responses: Record<string, unknown> = {};
  for (const [status, s] of Object.entries(op.answers)) {
    const content = successContent(s.content);
    responses[status] = {
      description: s.description,
      ...(content ? { content } : {}),
      ...(s.location
        ? { headers: { Location: { description: 'Where to look next.', schema: { type: 'string' } } } }
        : {}),
    };
  }
  for (const [status, when] of Object.entries(errorsOf(op))) {
    responses[status] = {
      description: `${STATUS_TEXT[Number(status)] ?? 'Error'}: ${when}.`,
      content: { 'application/json': { schema: errorSchema } },
    };
  }
  const body = op.body && {
    required: !op.body.optional,
    content: {
      'application/json': {
        schema: 'oneOf' in op.body ? { oneOf: op.body.oneOf.map(ref) } : ref(op.body.schema),
        ...(op.example?.body !== undefined ? { example: op.example.body } : {}),
      },
    },
  };
  const parameters = parametersOf(op);
  const who = roles ? `Roles: ${roles.join(', ')}.` : 'No API key needed.';
  return {
    operationId: operationId(op),
    tags: [op.tag],
    summary: op.summary,
    description: op.description ? `${op.description}\n\n${who}` : who,
    security: roles ? [{ apiKey: roles }] : [],
    'x-tuneloop-roles': roles ?? [],
    ...(parameters.length ? { parameters } : {}),
    ...(body ? { requestBody: body } : {}),
    responses,
  };
}

const TAGS = [
  { name: 'interactions', description: 'What an app’s users and its model said: the training data.' },
  { name: 'feedback', description: 'Users’ thumbs, ratings and corrections.' },
  { name: 'subjects', description: 'Consent and erasure, per user of an app.' },
  { name: 'chat', description: 'Answers from the model’s serving version.' },
  { name: 'openai', description: `The OpenAI-compatible surface, under ${OPENAI_BASE}: errors in OpenAI’s shape.` },
  { name: 'runs', description: 'Training runs: start, watch, cancel, approve a canary.' },
  { name: 'models', description: 'The registry: versions, aliases, training status, rollback.' },
  { name: 'schedules', description: 'Each model’s nightly run.' },
  { name: 'metrics', description: 'For Prometheus.' },
  { name: 'health', description: 'For load balancers and orchestrators.' },
  { name: 'docs', description: 'This document.' },
];

let built: Record<string, unknown> | undefined;

/** The document (built once: it depends on nothing but the code). */
export function openApiDocument(): Record<string, unknown> {
  if (built) return built;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of API_OPERATIONS) {
    const item = (paths[openApiPath(op.path)] ??= {});
    if (item[op.method]) throw new Error(`${op.method} ${op.path} is in the table twice`);
    item[op.method] = operationOf(op);
  }
  built = {
    openapi: '3.1.0',
    info: {
      title: 'tuneloop API',
      version: pkg.version,
      description:
        'Apps send their traffic and feedback here; operators run, watch and roll back training. Authenticate with ' +
        '`Authorization: Bearer <key>`; each operation names the roles it accepts (an admin key may call ' +
        'everything). Unknown body properties and query parameters are refused with a 400 naming them. The ' +
        'schemas are generated from the validators themselves; checks JSON Schema cannot say (the turn order of a ' +
        'conversation, text free of control characters) are made as well, and named in the 400 they give.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    tags: TAGS,
    paths,
    components: {
      securitySchemes: {
        apiKey: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'tl_<id>_<secret>',
          description: 'A tuneloop API key (`tuneloop keys create --role …`): its role is app, operator or admin.',
        },
      },
      schemas: {
        ...bodyComponents(),
        Error: jsonSchemaOf(errorBodySchema, 'output'),
        OpenAiError: jsonSchemaOf(openAiErrorSchema, 'output'),
      },
    },
  };
  return built;
}
