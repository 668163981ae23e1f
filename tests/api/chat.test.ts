import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import type { ModelDefinition } from '../../src/domain/model-config';
import { bucketOf } from '../../src/domain/routing';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  importTinyBase,
  startTestApi,
  temporalClient,
  testOllama,
  uid,
} from '../helpers/env';

/**
 * POST /v1/chat against a real Ollama serving the tiny model (imported as the register stage imports it) and a real
 * PostgreSQL: answers name the version, canary subjects fall back to production when the canary fails, structured
 * output validates, streams arrive as server-sent events, every call is recorded, and bad requests change nothing.
 */

let db: Db;
let drop: () => Promise<void>;
let closeClient: () => Promise<void>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let model: ModelDefinition;
let other: ModelDefinition;
let appKey: string;
let otherKey: string;
const ollama = testOllama();
let production: { id: string; version: string };

async function addVersion(m: ModelDefinition, version: string, tag: string | null) {
  return db
    .insertInto('model_versions')
    .values({ model_id: m.id, version, status: 'registered', ollama_tag: tag, adapter_key: null, run_id: null })
    .returning(['id', 'version'])
    .executeTakeFirstOrThrow();
}

async function point(m: ModelDefinition, name: 'production' | 'canary', versionId: string, percent: number | null) {
  await db
    .insertInto('aliases')
    .values({ model_id: m.id, name, version_id: versionId, percent })
    .onConflict((oc) => oc.columns(['model_id', 'name']).doUpdateSet({ version_id: versionId, percent }))
    .execute();
}

const count = async (table: 'serving_calls' | 'interactions') =>
  Number((await sql<{ n: string }>`select count(*) as n from ${sql.table(table)}`.execute(db)).rows[0]!.n);

/** A subject that the hash puts on the canary (below) or on production (at or above) a share of `percent`. */
function subjectRouted(m: ModelDefinition, toCanary: boolean, percent: number): string {
  for (let i = 0; ; i++) {
    const s = `subject-${i}`;
    if (bucketOf(m.id, s) < percent === toCanary) return s;
  }
}

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  const temporal = await temporalClient();
  closeClient = temporal.close;
  api = await startTestApi({ db, temporal: temporal.client, store: await createTestStore(), taskQueue: uid('tq-') });
  model = await createTestModel(db, { systemPrompt: 'You are a coach.' });
  other = await createTestModel(db);
  ({ key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] }));
  ({ key: otherKey } = await createApiKey(db, { name: 'other', role: 'app', appId: other.app, models: [other.id] }));
  const tag = `${model.id}:v1`;
  await importTinyBase(ollama, tag);
  production = await addVersion(model, 'v1', tag);
  await point(model, 'production', production.id, null);
});

afterAll(async () => {
  await api?.close();
  await closeClient?.();
  await drop?.();
});

const ask = (content: string, extra: Record<string, unknown> = {}) => ({
  model: model.id,
  subject: 'user-1',
  messages: [{ role: 'user', content }],
  options: { num_predict: 8 },
  ...extra,
});

describe('POST /v1/chat', () => {
  it('answers with the production version, names it, and records the call and the conversation', async () => {
    // Act
    const res = await api.call('POST', '/v1/chat', appKey, ask('What should I do for squats?'));
    await api.recorder.flush();

    // Assert
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ model: model.id, version: 'v1', alias: 'production' });
    expect(typeof res.json.message.content).toBe('string');
    expect(res.json.usage.promptTokens).toBeGreaterThan(0);
    const interaction = await db
      .selectFrom('interactions')
      .selectAll()
      .where('id', '=', res.json.id)
      .executeTakeFirstOrThrow();
    expect(interaction).toMatchObject({ source: 'served', model_version_id: production.id, model_id: model.id });
    // The app's conversation and the answer; the system prompt the API added is the model's, not the app's.
    expect(interaction.messages).toEqual([
      { role: 'user', content: 'What should I do for squats?' },
      { role: 'assistant', content: res.json.message.content },
    ]);
    const call = await db
      .selectFrom('serving_calls')
      .selectAll()
      .where('interaction_id', '=', res.json.id)
      .executeTakeFirstOrThrow();
    expect(call).toMatchObject({ alias: 'production', ok: true, fell_back: false, version_id: production.id });
  });

  it('validates structured output against the JSON schema given', async () => {
    // Arrange
    const format = {
      type: 'object',
      properties: { exercise: { type: 'string' }, sets: { type: 'integer' } },
      required: ['exercise', 'sets'],
    };

    // Act
    const res = await api.call(
      'POST',
      '/v1/chat',
      appKey,
      ask('Give me one exercise as JSON.', { format, options: { num_predict: 64 } }),
    );

    // Assert
    expect(res.status).toBe(200);
    expect(typeof res.json.schemaValid).toBe('boolean');
    if (res.json.schemaValid) expect(JSON.parse(res.json.message.content)).toHaveProperty('sets');
  });

  it('still answers for a model whose stored outputSchema the pattern engine refuses, checking JSON only', async () => {
    // Arrange: a schema stored before `models put` checked patterns (a repeat count over RE2's 1000)
    const third = await createTestModel(db);
    const { key } = await createApiKey(db, { name: 'third', role: 'app', appId: third.app, models: [third.id] });
    const v = await addVersion(third, 'v1', `${model.id}:v1`);
    await point(third, 'production', v.id, null);
    await db
      .updateTable('models')
      .set({
        output_schema: JSON.stringify({
          type: 'object',
          properties: { a: { type: 'string', pattern: '^a{0,1001}$' } },
        }),
      })
      .where('id', '=', third.id)
      .execute();

    // Act
    const res = await api.call('POST', '/v1/chat', key, {
      ...ask('Answer in JSON.'),
      model: third.id,
      options: { num_predict: 16 },
    });

    // Assert
    expect(res.status).toBe(200);
    expect(typeof res.json.schemaValid).toBe('boolean');
  });

  it('streams server-sent events: meta with the version, content chunks, then done', async () => {
    // Act
    const res = await fetch(`${api.baseUrl}/v1/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${appKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(ask('Plank tips?', { stream: true })),
    });
    const text = await res.text();

    // Assert
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = text
      .split('\n\n')
      .filter(Boolean)
      .map((block) => {
        const event = /^event: (.+)$/m.exec(block)?.[1] ?? 'message';
        return { event, data: JSON.parse(/^data: (.+)$/m.exec(block)![1]!) as Record<string, unknown> };
      });
    expect(events[0]).toMatchObject({ event: 'meta', data: { version: 'v1', alias: 'production' } });
    expect(events.at(-1)!.event).toBe('done');
    expect(events.slice(1, -1).every((e) => e.event === 'message' && typeof e.data.content === 'string')).toBe(true);
  });

  it('sends canary subjects to the canary and, when the canary fails, answers them from production', async () => {
    // Arrange: a canary whose tag Ollama does not have, for half of the subjects
    const canary = await addVersion(model, 'v2-broken', `${model.id}:v2-broken`);
    await point(model, 'canary', canary.id, 50);
    await new Promise((r) => setTimeout(r, 1_100)); // the API reads aliases at most once a second
    const onCanary = subjectRouted(model, true, 50);
    const onProduction = subjectRouted(model, false, 50);

    // Act
    const a = await api.call('POST', '/v1/chat', appKey, ask('hello', { subject: onCanary }));
    const b = await api.call('POST', '/v1/chat', appKey, ask('hello', { subject: onProduction }));
    await api.recorder.flush();

    // Assert: nobody sees the failure; the canary's call counts as an error against it
    expect(a.status).toBe(200);
    expect(a.json).toMatchObject({ version: 'v1', alias: 'production' });
    expect(b.status).toBe(200);
    const calls = await db
      .selectFrom('serving_calls')
      .selectAll()
      .where('interaction_id', 'in', [a.json.id, b.json.id])
      .execute();
    const byInteraction = Object.fromEntries(calls.map((c) => [c.interaction_id, c]));
    expect(byInteraction[a.json.id]).toMatchObject({
      alias: 'canary',
      version_id: canary.id,
      ok: false,
      fell_back: true,
    });
    expect(byInteraction[a.json.id]!.error).toMatch(/not found/);
    expect(byInteraction[b.json.id]).toMatchObject({ alias: 'production', ok: true });
    const answered = await db
      .selectFrom('interactions')
      .select('model_version_id')
      .where('id', '=', a.json.id)
      .executeTakeFirstOrThrow();
    expect(answered.model_version_id).toBe(production.id);
    await db.deleteFrom('aliases').where('model_id', '=', model.id).where('name', '=', 'canary').execute();
  });

  it.each([
    [
      'a conversation ending with the assistant',
      {
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: 'b' },
        ],
      },
      'body.messages',
    ],
    [
      'turns out of order',
      {
        messages: [
          { role: 'user', content: 'a' },
          { role: 'user', content: 'b' },
        ],
      },
      'body.messages.1.role',
    ],
    [
      'a system turn in the middle',
      {
        messages: [
          { role: 'user', content: 'a' },
          { role: 'system', content: 'b' },
          { role: 'user', content: 'c' },
        ],
      },
      'body.messages.1.role',
    ],
    ['an empty message', { messages: [{ role: 'user', content: '' }] }, 'body.messages.0.content'],
    ['a format that is not a JSON schema', { format: { type: 'nonsense' } }, 'body.format'],
    [
      'a pattern with a look-ahead (not linear-time)',
      { format: { type: 'string', pattern: '^(?=a)a+$' } },
      'body.format',
    ],
    ['a temperature out of range', { options: { temperature: 5 } }, 'body.options.temperature'],
    ['an unknown option', { options: { mirostat: 2 } }, 'body.options.mirostat'],
    ['an unknown field', { url: 'http://example.com/model' }, 'body.url'],
    ['no subject', { subject: undefined }, 'body.subject'],
  ])('refuses %s with a 400 naming the field, and records nothing', async (_what, change, field) => {
    // Arrange
    const [calls, interactions] = [await count('serving_calls'), await count('interactions')];

    // Act
    const res = await api.call('POST', '/v1/chat', appKey, { ...ask('hi'), ...change });
    await api.recorder.flush();

    // Assert
    expect(res.status).toBe(400);
    expect(res.json.error.field).toBe(field);
    expect([await count('serving_calls'), await count('interactions')]).toEqual([calls, interactions]);
  });

  it('answers 404 for an unknown model, 403 for another app’s, 503 while nothing serves, 401 without a key', async () => {
    // Act
    const unknown = await api.call('POST', '/v1/chat', appKey, { ...ask('hi'), model: 'no-such-model' });
    const foreign = await api.call('POST', '/v1/chat', appKey, { ...ask('hi'), model: other.id });
    const nothing = await api.call('POST', '/v1/chat', otherKey, { ...ask('hi'), model: other.id });
    const anonymous = await fetch(`${api.baseUrl}/v1/chat`, { method: 'POST' });

    // Assert
    expect(unknown.status).toBe(403); // an app key names its own models only; the answer does not reveal existence
    expect(foreign.status).toBe(403);
    expect(nothing.status).toBe(503);
    expect(nothing.json.error.code).toBe('no_version_serving');
    expect(anonymous.status).toBe(401);
  });
});

describe('GET /metrics', () => {
  it('counts inference by model, alias, version and who answered, and API latency by route, for operators only', async () => {
    // Arrange
    const { key: operator } = await createApiKey(db, { name: 'ops', role: 'operator', appId: null, models: [] });
    const scrape = async () =>
      (await fetch(`${api.baseUrl}/metrics`, { headers: { authorization: `Bearer ${operator}` } })).text();
    // Calls our versions answered, whichever alias (a subject may be in the canary an earlier test left)
    const served = (text: string) =>
      [
        ...text.matchAll(
          new RegExp(
            `^tuneloop_inference_calls_total\\{model="${model.id}",alias="\\w+",provider="local",outcome="ok"\\} (\\d+)`,
            'gm',
          ),
        ),
      ].reduce((n, m) => n + Number(m[1]), 0);
    const before = served(await scrape());

    // Act
    for (const q of ['Lunges?', 'Planks?']) {
      expect((await api.call('POST', '/v1/chat', appKey, ask(q))).status).toBe(200);
    }
    const text = await scrape();
    const asApp = await fetch(`${api.baseUrl}/metrics`, { headers: { authorization: `Bearer ${appKey}` } });
    const anonymous = await fetch(`${api.baseUrl}/metrics`);

    // Assert
    expect(served(text) - before).toBe(2);
    expect(text).toMatch(
      new RegExp(
        `^tuneloop_inference_duration_seconds_count\\{model="${model.id}",alias="\\w+",version="[\\w-]+",provider="local"\\} \\d+`,
        'm',
      ),
    );
    expect(text).toMatch(
      /^tuneloop_http_request_duration_seconds_count\{method="POST",route="\/v1\/chat",status="200"\} \d+/m,
    );
    expect(text).toContain('# HELP tuneloop_runs Pipeline runs by model and status');
    expect(asApp.status).toBe(403);
    expect(anonymous.status).toBe(401);
  });
});
