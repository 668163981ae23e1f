import { execFile } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import { upsertModel } from '../../src/db/queries/models';
import { REPO_ROOT } from '../../src/config';
import { modelDefinitionSchema, type ModelDefinition } from '../../src/domain/model-config';
import { startOllama, type RunningOllama } from '../../src/embedded/ollama-server';
import { IncumbentClients } from '../../src/llm/incumbent';
import { OllamaClient } from '../../src/llm/ollama';
import { createLogger } from '../../src/log';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  importTinyBase,
  startTestApi,
  temporalClient,
  testLog,
  testOllama,
  tmpDir,
  uid,
} from '../helpers/env';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { freePort } from '../helpers/ports';
import { pinnedVersion } from '../helpers/versions';

/**
 * The OpenAI-compatible surface (/openai/v1) judged by the official `openai` client, pinned in package.json: plain,
 * streamed and structured answers, and each error as the SDK's typed error. The incumbent is a real server speaking
 * the hosted providers' protocol (a second Ollama through its OpenAI-compatible endpoint) behind a fault-injecting
 * proxy: production until a local version exists, the fallback of a local one that fails, and its own faults
 * answered as 502/503/504 without losing the record. A recognisable fake key never leaves the process but to the
 * provider.
 */

const run = promisify(execFile);

const SECRET = `sk-tuneloop-leak-canary-${uid()}`;
const KEY_ENV = 'TUNELOOP_TEST_INCUMBENT_KEY';

let db: Db;
let drop: () => Promise<void>;
let closeClient: () => Promise<void>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let hosted: RunningOllama;
let proxy: FaultProxy;
let local: ModelDefinition; // a local production version, the incumbent behind it
let onlyHosted: ModelDefinition; // the incumbent alone: no local version yet
let failing: ModelDefinition; // a local version that cannot answer, the incumbent behind it
let hurried: ModelDefinition; // the incumbent alone, with a budget of 1.5 s
let appKey: string;
let otherKey: string;
let client: OpenAI;
const logs: string[] = [];
const ollama = testOllama();

async function defineModel(app: string, config: Record<string, unknown>) {
  const m = await createTestModel(db, { app });
  const def = modelDefinitionSchema.parse({ ...m, config: { ...m.config, ...config } });
  await upsertModel(db, def);
  return def;
}

async function serveLocally(m: ModelDefinition, tag: string) {
  const v = await db
    .insertInto('model_versions')
    .values({ model_id: m.id, version: 'v1', status: 'production', ollama_tag: tag, adapter_key: null, run_id: null })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db
    .insertInto('aliases')
    .values({ model_id: m.id, name: 'production', version_id: v.id, percent: null })
    .execute();
  return v.id;
}

const callsOf = (m: ModelDefinition) =>
  db.selectFrom('serving_calls').selectAll().where('model_id', '=', m.id).orderBy('at').execute();

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  const temporal = await temporalClient();
  closeClient = temporal.close;
  // The incumbent: a second Ollama, reached through the proxy's OpenAI-compatible /v1.
  hosted = await startOllama({ dir: await tmpDir('hosted-'), port: await freePort(), log: testLog });
  await importTinyBase(new OllamaClient(hosted.url), 'hosted-model:latest');
  proxy = await startFaultProxy(hosted.url);
  const capture = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  api = await startTestApi({
    db,
    temporal: temporal.client,
    store: await createTestStore(),
    taskQueue: uid('tq-'),
    log: createLogger('debug', capture),
    incumbents: new IncumbentClients({ env: { ...process.env, [KEY_ENV]: SECRET } }),
  });
  const app = uid('app-');
  // Budgets wide enough for a loaded machine (the tests that need a timeout have their own model).
  const incumbent = { baseUrl: `${proxy.url}/v1`, model: 'hosted-model', apiKeyEnv: KEY_ENV, timeoutMs: 30_000 };
  const fallback = { breakerFailures: 3, breakerCooldownMs: 600_000 };
  local = await defineModel(app, { incumbent: { ...incumbent, maxRetries: 0 }, fallback });
  onlyHosted = await defineModel(app, {
    incumbent: { ...incumbent, maxRetries: 1, prices: { inputPerMTok: 0.5, outputPerMTok: 1.5 } },
  });
  failing = await defineModel(app, { incumbent: { ...incumbent, maxRetries: 0 }, fallback });
  hurried = await defineModel(app, { incumbent: { ...incumbent, maxRetries: 1, timeoutMs: 1_500 } });
  await new OllamaClient(hosted.url).load('hosted-model:latest', { timeoutMs: 120_000 });
  const tag = `${local.id}:v1`;
  await importTinyBase(ollama, tag);
  await serveLocally(local, tag);
  await serveLocally(failing, `${failing.id}:missing`); // never imported: Ollama answers 404
  ({ key: appKey } = await createApiKey(db, {
    name: 'app',
    role: 'app',
    appId: app,
    models: [local.id, onlyHosted.id, failing.id, hurried.id],
  }));
  const other = await createTestModel(db);
  ({ key: otherKey } = await createApiKey(db, { name: 'other', role: 'app', appId: other.app, models: [other.id] }));
  client = new OpenAI({ baseURL: `${api.baseUrl}/openai/v1`, apiKey: appKey, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await api?.close();
  await proxy?.close();
  await hosted?.stop();
  await closeClient?.();
  await drop?.();
});

const user = (content: string) => [{ role: 'user' as const, content }];

describe('POST /openai/v1/chat/completions with the official client', () => {
  it('answers from the local production version, with tuneloop’s interaction id, and records it', async () => {
    // Act
    const { data, response } = await client.chat.completions
      .create({ model: local.id, messages: user('What should I do for squats?'), max_tokens: 8, user: 'u-1' })
      .withResponse();
    await api.recorder.flush();

    // Assert
    expect(data).toMatchObject({ object: 'chat.completion', model: local.id, system_fingerprint: 'v1' });
    expect(data.choices).toHaveLength(1);
    expect(['stop', 'length']).toContain(data.choices[0]!.finish_reason);
    expect(data.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(data.usage!.total_tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens);
    expect(response.headers.get('x-tuneloop-version')).toBe('v1');
    const interaction = await db
      .selectFrom('interactions')
      .selectAll()
      .where('id', '=', data.id)
      .executeTakeFirstOrThrow();
    expect(interaction.messages.at(-1)).toEqual({ role: 'assistant', content: data.choices[0]!.message.content });
    const [call] = (await callsOf(local)).filter((c) => c.interaction_id === data.id);
    expect(call).toMatchObject({ ok: true, answered_by: 'local', fell_back: false });
    expect(call!.prompt_tokens).toBe(data.usage!.prompt_tokens);
  });

  it('streams chunks that add up to the recorded answer, the usage last, and ends with [DONE]', async () => {
    // Act
    const stream = await client.chat.completions.create({
      model: local.id,
      messages: user('Plan my Monday.'),
      max_completion_tokens: 12,
      stream: true,
      stream_options: { include_usage: true },
      user: 'u-2',
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    await api.recorder.flush();

    // Assert
    const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const finish = chunks.find((c) => c.choices[0]?.finish_reason);
    expect(['stop', 'length']).toContain(finish!.choices[0]!.finish_reason);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    const interaction = await db
      .selectFrom('interactions')
      .select('messages')
      .where('id', '=', chunks[0]!.id)
      .executeTakeFirstOrThrow();
    expect(interaction.messages.at(-1)!.content).toBe(content);
  });

  it('holds a json_schema answer to the schema, and a json_object answer to JSON', async () => {
    // Arrange
    const schema = {
      type: 'object',
      properties: { exercise: { type: 'string' }, sets: { type: 'integer' } },
      required: ['exercise', 'sets'],
    };

    // Act
    const structured = await client.chat.completions.create({
      model: local.id,
      messages: user('One exercise as JSON.'),
      max_tokens: 64,
      response_format: { type: 'json_schema', json_schema: { name: 'exercise', schema } },
      user: 'u-3',
    });
    const anyJson = await client.chat.completions.create({
      model: onlyHosted.id,
      messages: user('One exercise as JSON.'),
      max_tokens: 64,
      response_format: { type: 'json_object' },
      user: 'u-3',
    });
    await api.recorder.flush();

    // Assert: the grammar keeps the answer on the schema; what ran out of tokens is recorded as not valid.
    for (const [answer, m] of [
      [structured, local],
      [anyJson, onlyHosted],
    ] as const) {
      const [call] = (await callsOf(m)).filter((c) => c.interaction_id === answer.id);
      expect(typeof call!.schema_valid).toBe('boolean');
      if (answer.choices[0]!.finish_reason === 'stop') expect(call!.schema_valid).toBe(true);
      if (call!.schema_valid) expect(() => JSON.parse(answer.choices[0]!.message.content!)).not.toThrow();
    }
    if (structured.choices[0]!.finish_reason === 'stop') {
      expect(JSON.parse(structured.choices[0]!.message.content!)).toHaveProperty('sets');
    }
  });

  it('lists the models the key may use, and finds one', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids.sort()).toEqual([local.id, onlyHosted.id, failing.id, hurried.id].sort());
    await expect(client.models.retrieve(local.id)).resolves.toMatchObject({ id: local.id, object: 'model' });
  });

  it.each([
    ['tools', { tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }, 'tools'],
    ['n > 1', { n: 2 }, 'n'],
    ['logprobs', { logprobs: true }, 'logprobs'],
    ['an unknown parameter', { frobnicate: 1 }, 'frobnicate'],
    ['a bad temperature', { temperature: 7 }, 'temperature'],
    ['a tool message', { messages: [{ role: 'tool', content: 'x', tool_call_id: 'a' }] }, 'messages[0]'],
    [
      'a schema that does not compile',
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'nonsense' } } } },
      'response_format',
    ],
  ])('refuses %s as a BadRequestError naming the parameter, and records nothing', async (_what, extra, param) => {
    // Arrange
    const before = (await callsOf(local)).length;

    // Act
    const err = await client.chat.completions
      .create({ model: local.id, messages: user('hi'), user: 'u-4', ...(extra as object) } as never)
      .catch((e: unknown) => e);
    await api.recorder.flush();

    // Assert
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toContain(param);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).type).toBe('invalid_request_error');
    expect((await callsOf(local)).length).toBe(before);
  });

  it('accepts what asks nothing of a parameter it cannot honour: null, n: 1, logprobs: false, text only', async () => {
    // Act
    const answer = await client.chat.completions.create({
      model: local.id,
      messages: user('hi'),
      max_tokens: 4,
      user: 'u-neutral',
      ...{ tools: null, tool_choice: null, service_tier: null, top_logprobs: null },
      ...{ n: 1, logprobs: false, store: false, modalities: ['text'] },
    } as never);

    // Assert
    expect(answer).toMatchObject({ object: 'chat.completion', model: local.id });
  });

  it('raises the typed errors: authentication, permission, not found', async () => {
    const stranger = new OpenAI({ baseURL: `${api.baseUrl}/openai/v1`, apiKey: 'tl_000000000000_nope', maxRetries: 0 });
    await expect(stranger.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const other = new OpenAI({ baseURL: `${api.baseUrl}/openai/v1`, apiKey: otherKey, maxRetries: 0 });
    await expect(other.chat.completions.create({ model: local.id, messages: user('hi') })).rejects.toBeInstanceOf(
      OpenAI.PermissionDeniedError,
    );
    await expect(client.models.retrieve('no-such-model')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe('the official Python client', () => {
  it('gets a plain answer, a streamed one with usage, and a refused parameter as its BadRequestError', async () => {
    // Act
    const { stdout } = await run(path.join(REPO_ROOT, '.tools/py-openai/bin/python'), [
      path.join(REPO_ROOT, 'tests/helpers/openai_smoke.py'),
      `${api.baseUrl}/openai/v1`,
      appKey,
      local.id,
    ]);
    const got = JSON.parse(stdout);
    await api.recorder.flush();

    // Assert
    expect(got.version).toBe(pinnedVersion('PY_OPENAI_VERSION'));
    expect(got.plain).toMatchObject({ fingerprint: 'v1' });
    expect(['stop', 'length']).toContain(got.plain.finish);
    expect(got.plain.usage.prompt_tokens).toBeGreaterThan(0);
    expect(got.stream.usage.completion_tokens).toBeGreaterThan(0);
    expect(got.refused).toEqual({ status: 400, param: 'n', type: 'BadRequestError' });
    const stored = await db
      .selectFrom('interactions')
      .select(['id', 'messages'])
      .where('id', 'in', [got.plain.id, got.stream.id])
      .execute();
    expect(stored).toHaveLength(2);
    expect(stored.find((r) => r.id === got.stream.id)!.messages.at(-1)!.content).toBe(got.stream.content);
  });
});

describe('the subject and the conversation', () => {
  it('answers a call without a subject and counts it, but keeps no conversation of it', async () => {
    // Act
    const answer = await client.chat.completions.create({ model: local.id, messages: user('hi'), max_tokens: 4 });
    await api.recorder.flush();

    // Assert
    const call = (await callsOf(local)).at(-1)!;
    expect(call).toMatchObject({ ok: true, interaction_id: null });
    const stored = await db.selectFrom('interactions').select('id').where('id', '=', answer.id).execute();
    expect(stored).toEqual([]);
  });

  it('takes the subject from the header too, and keeps the conversation id with the turn for feedback', async () => {
    // Act
    const { data, response } = await client.chat.completions
      .create(
        { model: local.id, messages: user('hi'), max_tokens: 4 },
        { headers: { 'x-tuneloop-subject': 'u-5', 'x-tuneloop-conversation-id': 'conv-42' } },
      )
      .withResponse();
    await api.recorder.flush();
    const feedback = await api.call('POST', `/v1/interactions/${data.id}/feedback`, appKey, { thumbs: 'up' });

    // Assert
    expect(response.headers.get('x-tuneloop-conversation-id')).toBe('conv-42');
    const row = await db.selectFrom('interactions').selectAll().where('id', '=', data.id).executeTakeFirstOrThrow();
    expect(row.metadata).toMatchObject({ conversation_id: 'conv-42', surface: 'openai' });
    expect(feedback.status).toBe(201);
  });

  it('lands feedback on a whole conversation on all of its turns, once, and refuses what it cannot place', async () => {
    // Arrange: three turns of one conversation (header and metadata), one turn of another
    const conv = uid('conv-');
    const turn = (content: string, how: 'header' | 'metadata', id = conv) =>
      client.chat.completions.create(
        {
          model: local.id,
          messages: user(content),
          max_tokens: 4,
          user: 'u-6',
          ...(how === 'metadata' ? { metadata: { conversation_id: id } } : {}),
        },
        how === 'header' ? { headers: { 'x-tuneloop-conversation-id': id } } : {},
      );
    const turns = [await turn('hi', 'header'), await turn('and squats?', 'metadata'), await turn('thanks', 'header')];
    const elsewhere = await turn('hi', 'header', uid('conv-'));
    await api.recorder.flush();
    const feedbackOf = (ids: string[]) =>
      db.selectFrom('feedback').selectAll().where('interaction_id', 'in', ids).orderBy('interaction_id').execute();

    // Act
    const first = await api.call('POST', `/v1/conversations/${conv}/feedback`, appKey, { id: 'fb-1', rating: 2 });
    const again = await api.call('POST', `/v1/conversations/${conv}/feedback`, appKey, { id: 'fb-1', rating: 2 });
    const refused = [
      await api.call('POST', `/v1/conversations/${conv}/feedback`, appKey, { rating: 9 }),
      await api.call('POST', `/v1/conversations/${conv}/feedback`, appKey, {}),
      await api.call('POST', `/v1/conversations/${conv}/feedback`, appKey, { correction: 'Do this instead.' }),
      await api.call('POST', `/v1/conversations/not%20an%20id/feedback`, appKey, { thumbs: 'up' }),
      await api.call('POST', `/v1/conversations/${conv}/feedback?model=${uid('m-')}`, appKey, { thumbs: 'up' }),
      await api.call('POST', `/v1/conversations/${uid('conv-')}/feedback`, appKey, { thumbs: 'up' }),
      await api.call('POST', `/v1/conversations/${conv}/feedback`, otherKey, { thumbs: 'up' }),
    ];

    // Assert
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ conversation: conv, model: local.id, turns: 3, duplicate: false });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ turns: 3, duplicate: true });
    expect(refused.map((r) => r.status)).toEqual([400, 400, 400, 400, 403, 404, 404]);
    expect(refused[2]!.json.error.message).toContain('correction');
    expect(refused[0]!.json.error.message).toContain('rating');
    const stored = await feedbackOf(turns.map((t) => t.id));
    expect(stored.map((f) => f.interaction_id).sort()).toEqual(turns.map((t) => t.id).sort());
    expect(stored.every((f) => f.rating === 2 && f.external_id === 'fb-1')).toBe(true);
    expect(await feedbackOf([elsewhere.id])).toEqual([]);
  });
});

describe('the incumbent', () => {
  it('is production until a local version exists: it answers, under the key the config names, and the conversation is kept', async () => {
    // Act
    const answer = await client.chat.completions.create({
      model: onlyHosted.id,
      messages: user('Plan my week.'),
      max_tokens: 8,
      user: 'u-6',
    });
    await api.recorder.flush();

    // Assert
    expect(answer.system_fingerprint).toBe('incumbent');
    expect(proxy.seen.at(-1)).toEqual({ path: '/v1/chat/completions', authorization: `Bearer ${SECRET}` });
    const row = await db.selectFrom('interactions').selectAll().where('id', '=', answer.id).executeTakeFirstOrThrow();
    expect(row.model_version_id).toBeNull();
    expect(row.metadata).toMatchObject({ servedBy: 'incumbent' });
    const call = (await callsOf(onlyHosted)).at(-1)!;
    expect(call).toMatchObject({ ok: true, answered_by: 'incumbent', version_id: null, alias: 'production' });
    expect(call.completion_tokens).toBe(answer.usage!.completion_tokens);
  });

  it('answers for a local version that fails, and after the configured failures takes all of its traffic', async () => {
    // Act: breakerFailures is 3
    const answers = [];
    for (let i = 0; i < 5; i++) {
      answers.push(
        await client.chat.completions.create({
          model: failing.id,
          messages: user('hi'),
          max_tokens: 4,
          user: `u-${i}`,
        }),
      );
    }
    await api.recorder.flush();

    // Assert: three calls asked the local version first and fell back; then the breaker sent them straight on.
    expect(answers.map((a) => a.system_fingerprint)).toEqual(Array(5).fill('incumbent'));
    const calls = await callsOf(failing);
    expect(calls.map((c) => [c.fell_back, c.version_id === null, c.answered_by])).toEqual([
      [true, false, 'incumbent'],
      [true, false, 'incumbent'],
      [true, false, 'incumbent'],
      [false, true, 'incumbent'],
      [false, true, 'incumbent'],
    ]);
  });

  it('being down never takes the local path down', async () => {
    proxy.fail({ kind: 'reset' });
    try {
      const answer = await client.chat.completions.create({ model: local.id, messages: user('hi'), max_tokens: 4 });
      expect(answer.system_fingerprint).toBe('v1');
    } finally {
      proxy.clear();
    }
  });

  it.each([
    ['a connection reset', { kind: 'reset' } as const, 502, OpenAI.InternalServerError],
    ['a 500', { kind: '500' } as const, 502, OpenAI.InternalServerError],
    [
      'a 429 whose Retry-After passes the budget',
      { kind: '429', retryAfterS: 60 } as const,
      503,
      OpenAI.InternalServerError,
    ],
    ['a first byte later than the budget', { kind: 'slow', delayMs: 3_000 } as const, 504, OpenAI.InternalServerError],
  ])(
    'answers %s with the status that says so, in OpenAI’s shape, and records the failed call',
    async (_what, fault, status, type) => {
      // Arrange
      proxy.fail(fault);
      const before = proxy.seen.length;
      try {
        // Act
        const err = await client.chat.completions
          .create({
            model: fault.kind === 'slow' ? hurried.id : onlyHosted.id,
            messages: user('hi'),
            max_tokens: 4,
            user: 'u-7',
          })
          .catch((e: unknown) => e);
        await api.recorder.flush();

        // Assert
        expect(err).toBeInstanceOf(type);
        const e = err as InstanceType<typeof OpenAI.APIError>;
        expect(e.status).toBe(status);
        expect(e.type).toBe('server_error');
        if (fault.kind === '429') expect(e.headers?.get('retry-after')).toBe('60');
        // maxRetries 1: the provider was asked twice, unless the wait it asked for (60 s) would pass the budget
        // (then once, and the caller is told to come back when the provider said) or the budget ran out.
        if (fault.kind === 'reset' || fault.kind === '500') expect(proxy.seen.length - before).toBe(2);
        else expect(proxy.seen.length - before).toBe(1);
        expect((await callsOf(fault.kind === 'slow' ? hurried : onlyHosted)).at(-1)).toMatchObject({
          ok: false,
          answered_by: null,
        });
        expect(JSON.stringify(e.error)).not.toContain(proxy.url);
        expect(JSON.stringify(e.error)).not.toContain(SECRET);
      } finally {
        proxy.clear();
      }
    },
  );

  it.each([
    ['a 500', { kind: '500' } as const],
    ['a 429 whose Retry-After fits in the budget', { kind: '429', retryAfterS: 1 } as const],
  ])('recovers from %s on a retry within the budget', async (_what, fault) => {
    proxy.fail(fault, 1);
    const before = proxy.seen.length;
    const answer = await client.chat.completions.create({
      model: onlyHosted.id,
      messages: user('hi'),
      max_tokens: 4,
      user: 'u-8',
    });
    expect(answer.system_fingerprint).toBe('incumbent');
    expect(proxy.seen.length - before).toBe(2);
  });

  it.each([
    ['cut in the middle', { kind: 'cut', afterBytes: 300 } as const],
    ['ended cleanly before [DONE]', { kind: 'truncate', events: 3 } as const],
    ['broken off with an error event', { kind: 'truncate', events: 3, then: 'error-event' } as const],
  ])('ends a stream %s with an error the client raises, and records the failure', async (_what, fault) => {
    proxy.fail(fault);
    try {
      const stream = await client.chat.completions.create({
        model: onlyHosted.id,
        messages: user('Tell me a long story about squats.'),
        max_tokens: 64,
        stream: true,
        user: 'u-9',
      });
      const err = await (async () => {
        for await (const _ of stream) void _;
      })().catch((e: unknown) => e);
      await api.recorder.flush();
      expect(err).toBeInstanceOf(Error);
      expect((await callsOf(onlyHosted)).at(-1)).toMatchObject({ ok: false });
    } finally {
      proxy.clear();
    }
  });
});

describe('the migration report', () => {
  it('shows who answered, the fallbacks and what the incumbent cost, per model', async () => {
    // Act: after the calls above
    await api.recorder.flush();
    const hostedOnly = await api.call('GET', `/v1/models/${onlyHosted.id}/migration`, appKey);
    const withFallbacks = await api.call('GET', `/v1/models/${failing.id}/migration?days=7`, appKey);
    const localFirst = await api.call('GET', `/v1/models/${local.id}/migration`, appKey);

    // Assert
    expect(hostedOnly.status).toBe(200);
    expect(hostedOnly.json.serving.production).toBe('incumbent');
    expect(hostedOnly.json.incumbent).toEqual({
      model: 'hosted-model',
      prices: { inputPerMTok: 0.5, outputPerMTok: 1.5 },
    });
    expect(hostedOnly.json.totals.answeredLocally).toBe(0);
    expect(hostedOnly.json.totals.answeredByIncumbent).toBeGreaterThan(0);
    expect(hostedOnly.json.totals.unanswered).toBeGreaterThan(0); // the faults
    expect(hostedOnly.json.totals.cost.incumbentUsd).toBeGreaterThan(0);
    expect(hostedOnly.json.daily[0].incumbentP95).toBeGreaterThan(0);
    expect(withFallbacks.json.window.days).toBe(7);
    expect(withFallbacks.json.totals).toMatchObject({ fallbacks: 3, answeredByIncumbent: 5, localShare: 0 });
    expect(localFirst.json.serving.production).toBe('v1');
    expect(localFirst.json.totals.localShare).toBeGreaterThan(0.5);
    expect(localFirst.json.totals.cost).toBeNull();
  });

  it('refuses a bad window, and a model outside the key', async () => {
    expect((await api.call('GET', `/v1/models/${local.id}/migration?days=0`, appKey)).json.error.field).toBe(
      'query.days',
    );
    expect((await api.call('GET', `/v1/models/${local.id}/migration`, otherKey)).status).toBe(403);
  });
});

describe('fair use', () => {
  it("refuses one key's flood with 429 and Retry-After while another key's calls are all answered", async () => {
    // Arrange: a key that may have 2 calls in flight and 3 per burst, on its own API
    const tight = await startTestApi({
      db,
      temporal: (await temporalClient()).client,
      store: await createTestStore(),
      taskQueue: uid('tq-'),
      limits: {
        keyRps: 0.01,
        keyBurst: 2,
        keyConcurrency: 2,
        modelConcurrency: 64,
        modelQueue: 16,
        modelWaitMs: 5_000,
      },
    });
    const app = uid('app-');
    const a = await createTestModel(db, { app });
    const tag = `${a.id}:v1`;
    await importTinyBase(ollama, tag);
    await serveLocally(a, tag);
    const { key: flooder } = await createApiKey(db, { name: 'flood', role: 'app', appId: app, models: [a.id] });
    const { key: quiet } = await createApiKey(db, { name: 'quiet', role: 'app', appId: app, models: [a.id] });
    const body = (subject: string) => ({
      model: a.id,
      messages: user('hi'),
      max_tokens: 2,
      user: subject,
    });
    try {
      // Act
      const flood = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          tight.call('POST', '/openai/v1/chat/completions', flooder, body(`f-${i}`)),
        ),
      );
      const calm = [];
      for (let i = 0; i < 2; i++)
        calm.push(await tight.call('POST', '/openai/v1/chat/completions', quiet, body(`q-${i}`)));

      // Assert
      const refused = flood.filter((r) => r.status === 429);
      expect(refused.length).toBeGreaterThanOrEqual(12 - 2);
      for (const r of refused) {
        expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
        expect(r.json.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limited' });
      }
      expect(calm.map((r) => r.status)).toEqual([200, 200]);
      const sdk = new OpenAI({ baseURL: `${tight.baseUrl}/openai/v1`, apiKey: flooder, maxRetries: 0 });
      await expect(sdk.chat.completions.create(body('f-last'))).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    } finally {
      await tight.close();
    }
  });
});

describe('the incumbent’s key', () => {
  it('never shows up in logs, responses, error bodies or the database', async () => {
    // The calls above went through every path (answers, faults, fallbacks); the key was sent to the provider.
    expect(proxy.seen.some((s) => s.authorization === `Bearer ${SECRET}`)).toBe(true);
    await api.recorder.flush();
    expect(logs.join('')).not.toContain(SECRET);
    expect(logs.join('')).not.toContain(SECRET.slice(-12));
    const tables = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`.execute(
      db,
    );
    for (const { table_name } of tables.rows) {
      const found = await sql<{ n: number }>`
        select count(*)::int as n from ${sql.table(table_name)} t where t::text like ${'%' + SECRET.slice(-12) + '%'}`.execute(
        db,
      );
      expect(found.rows[0]!.n, table_name).toBe(0);
    }
    // A model definition names the variable, never the value.
    const stored = await db
      .selectFrom('models')
      .select('config')
      .where('id', '=', onlyHosted.id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(stored.config)).toContain(KEY_ENV);
  });
});
