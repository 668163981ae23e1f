import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Client } from '@temporalio/client';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp } from '../../src/api/app';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import type { ModelDefinition } from '../../src/domain/model-config';
import { closeServer } from '../../src/embedded/stack';
import {
  countRows,
  createTestDb,
  createTestModel,
  createTestStore,
  startTestWorker,
  temporalClient,
  testLog,
  testOllama,
  tmpDir,
  uid,
} from '../helpers/env';

/**
 * The real express app over a real database, the Temporal dev server and a worker, called over HTTP as a client
 * would. Every rejected write is followed by a check that nothing reached the database.
 */

let db: Db;
let drop: () => Promise<void>;
let client: Client;
let closeClient: () => Promise<void>;
let worker: Awaited<ReturnType<typeof startTestWorker>>;
let server: Server;
let baseUrl: string;

let modelA: ModelDefinition;
let modelB: ModelDefinition;
const keys = { appA: '', appB: '', operator: '', admin: '' };
/** Every key issued in this file: no response may contain one. */
const issuedKeys: string[] = [];

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  const store = await createTestStore();
  ({ client, close: closeClient } = await temporalClient());
  worker = await startTestWorker({ deps: { db, store, log: testLog, ollama: testOllama(), tmpDir: await tmpDir() } });
  // Keys are checked against the database on every call here (authCacheMs 0); the cache has a test of its own.
  const app = createApp({
    db,
    temporal: client,
    store,
    log: testLog,
    ollama: testOllama(),
    authCacheMs: 0,
    taskQueue: worker.taskQueue,
    bodyLimit: '64kb',
  });
  server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  modelA = await createTestModel(db, { id: uid('model-a-'), app: uid('app-a-') });
  modelB = await createTestModel(db, { id: uid('model-b-'), app: uid('app-b-') });
  keys.appA = await newKey({ name: 'app-a', role: 'app', appId: modelA.app, models: [modelA.id] });
  keys.appB = await newKey({ name: 'app-b', role: 'app', appId: modelB.app, models: [modelB.id] });
  keys.operator = await newKey({ name: 'ops', role: 'operator', appId: null, models: [] });
  keys.admin = await newKey({ name: 'root', role: 'admin', appId: null, models: [] });
});

afterAll(async () => {
  if (server) await closeServer(server);
  await worker?.stop();
  await closeClient?.();
  await drop?.();
});

async function newKey(input: Parameters<typeof createApiKey>[1]): Promise<string> {
  const { key } = await createApiKey(db, input);
  issuedKeys.push(key);
  return key;
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are asserted field by field
  json: any;
}

async function call(
  method: string,
  path: string,
  opts: { key?: string; body?: unknown; raw?: string; contentType?: string; authorization?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.authorization) headers.authorization = opts.authorization;
  let body: string | undefined;
  if (opts.raw !== undefined || opts.body !== undefined) {
    body = opts.raw ?? JSON.stringify(opts.body);
    headers['content-type'] = opts.contentType ?? 'application/json';
  }
  const res = await fetch(`${baseUrl}${path}`, { method, headers, body });
  const text = await res.text();
  expectNothingLeaked(text);
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON; the caller asserts on text
  }
  return { status: res.status, headers: res.headers, text, json };
}

const STACK_FRAME = /\bat \S+ \(|\bat (file:\/\/)?\/\S+:\d+:\d+|node:internal/;

/** Checked on every response: no stack frames, no database password, no API key (whole or its secret part). */
function expectNothingLeaked(text: string) {
  const password = decodeURIComponent(new URL(inject('pgAdminUrl')).password);
  expect(text).not.toMatch(STACK_FRAME);
  if (password) expect(text).not.toContain(password);
  for (const key of issuedKeys) {
    expect(text).not.toContain(key);
    expect(text).not.toContain(key.slice(-43));
  }
}

const post = (path: string, key: string | undefined, body: unknown) => call('POST', path, { key, body });

/** Row counts of every table a rejected write could touch. */
async function snapshot() {
  const count = async (table: string) => {
    const r = await sql<{ n: string }>`select count(*) as n from ${sql.table(table)}`.execute(db);
    return Number(r.rows[0]!.n);
  };
  const tables = ['interactions', 'subjects', 'consent_events', 'runs', 'audit_log'] as const;
  return Object.fromEntries(await Promise.all(tables.map(async (t) => [t, await count(t)] as const)));
}

const chat = (model: string, subject: string, extra: Record<string, unknown> = {}) => ({
  model,
  subject,
  messages: [
    { role: 'user', content: `question from ${subject}` },
    { role: 'assistant', content: `answer to ${subject}` },
  ],
  ...extra,
});

async function storedMessages(model: string, externalId: string) {
  const row = await db
    .selectFrom('interactions')
    .select('messages')
    .where('model_id', '=', model)
    .where('external_id', '=', externalId)
    .executeTakeFirstOrThrow();
  return row.messages;
}

describe('authentication', () => {
  const write = () => chat(modelA.id, uid('s-'));

  it('answers 401 without a key and writes nothing', async () => {
    const before = await snapshot();

    const res = await post('/v1/interactions', undefined, write());

    expect(res.status).toBe(401);
    expect(res.json.error).toMatchObject({ code: 'unauthenticated' });
    expect(await snapshot()).toEqual(before);
  });

  it('answers 401 for a malformed key or a non-Bearer scheme and writes nothing', async () => {
    const before = await snapshot();

    const malformed = await call('POST', '/v1/interactions', { authorization: 'Bearer not-a-key', body: write() });
    const basic = await call('POST', '/v1/interactions', { authorization: `Basic ${keys.appA}`, body: write() });

    expect(malformed.status).toBe(401);
    expect(malformed.json.error).toMatchObject({ code: 'unauthenticated', message: 'invalid API key' });
    expect(basic.status).toBe(401);
    expect(basic.json.error.code).toBe('unauthenticated');
    expect(await snapshot()).toEqual(before);
  });

  it('answers 401 for a well-formed key that was never issued, or whose secret is wrong', async () => {
    const before = await snapshot();
    const unknown = `tl_${'0'.repeat(12)}_${'A'.repeat(43)}`;
    const wrongSecret = keys.appA.replace(/_[A-Za-z0-9_-]{43}$/, `_${'B'.repeat(43)}`);

    const a = await post('/v1/interactions', unknown, write());
    const b = await post('/v1/interactions', wrongSecret, write());

    expect([a.status, b.status]).toEqual([401, 401]);
    expect(a.json.error).toMatchObject({ code: 'unauthenticated', message: 'invalid API key' });
    expect(b.json.error).toEqual(a.json.error);
    expect(await snapshot()).toEqual(before);
  });

  it('trusts a key that checked out for the cache time only: a revoked key stops working within it', async () => {
    // Arrange
    const cached = createApp({
      db,
      temporal: client,
      store: await createTestStore(),
      log: testLog,
      ollama: testOllama(),
      authCacheMs: 300,
      taskQueue: 'unused',
      bodyLimit: '64kb',
    });
    const srv = await new Promise<Server>((resolve) => {
      const s = cached.listen(0, '127.0.0.1', () => resolve(s));
    });
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1/runs`;
    const { id, key } = await createApiKey(db, { name: 'cached', role: 'app', appId: modelA.app, models: [] });
    issuedKeys.push(key);
    const get = async () => (await fetch(url, { headers: { authorization: `Bearer ${key}` } })).status;

    // Act
    const first = await get();
    await db.updateTable('api_keys').set({ revoked_at: new Date() }).where('id', '=', id).execute();
    const withinCache = await get();
    await new Promise((r) => setTimeout(r, 400));
    const afterCache = await get();
    await closeServer(srv);

    // Assert
    expect([first, withinCache, afterCache]).toEqual([200, 200, 401]);
  });

  it('answers 401 once a key is revoked, though it worked before', async () => {
    const { id, key } = await createApiKey(db, { name: 'soon-revoked', role: 'app', appId: modelA.app, models: [] });
    issuedKeys.push(key);
    expect((await call('GET', '/v1/runs', { key })).status).toBe(200);
    await db.updateTable('api_keys').set({ revoked_at: new Date() }).where('id', '=', id).execute();
    const before = await snapshot();

    const read = await call('GET', '/v1/runs', { key });
    const writeRes = await post('/v1/interactions', key, write());

    expect(read.status).toBe(401);
    expect(writeRes.status).toBe(401);
    expect(writeRes.json.error.code).toBe('unauthenticated');
    expect(await snapshot()).toEqual(before);
  });
});

describe('authorization and isolation between apps', () => {
  it('refuses an app key starting a run (403) and starts nothing', async () => {
    const before = await snapshot();

    const res = await post('/v1/runs', keys.appA, { model: modelA.id });

    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe('forbidden');
    expect(await snapshot()).toEqual(before);
  });

  it('refuses an operator key writing interactions or consent (403) and writes nothing', async () => {
    const before = await snapshot();

    const interactions = await post('/v1/interactions', keys.operator, chat(modelA.id, 'op-subject'));
    const consent = await call('PUT', `/v1/subjects/op-subject/consent?app=${modelA.app}`, {
      key: keys.operator,
      body: { training: true, policyVersion: 'v1' },
    });

    expect(interactions.status).toBe(403);
    expect(interactions.json.error.code).toBe('forbidden');
    expect(consent.status).toBe(403);
    expect(consent.json.error.code).toBe('forbidden');
    expect(await snapshot()).toEqual(before);
  });

  it("refuses app A's key writing to app B's model, alone or inside a batch, and writes nothing", async () => {
    const before = await snapshot();

    const single = await post('/v1/interactions', keys.appA, chat(modelB.id, 'intruder'));
    const batch = await post('/v1/interactions', keys.appA, {
      interactions: [chat(modelA.id, 'ok-subject'), chat(modelB.id, 'intruder')],
    });

    expect(single.status).toBe(403);
    expect(single.json.error).toMatchObject({ code: 'forbidden', field: 'body.model' });
    expect(batch.status).toBe(403);
    expect(batch.json.error).toMatchObject({ code: 'forbidden', field: 'body.interactions.1.model' });
    expect(await snapshot()).toEqual(before);
  });

  it("refuses a key that lists another app's model but is bound to its own app", async () => {
    // A misissued key: app A's key naming model B. The model's owner decides, not the key's list.
    const crossed = await newKey({ name: 'crossed', role: 'app', appId: modelA.app, models: [modelB.id] });
    const before = await snapshot();

    const res = await post('/v1/interactions', crossed, chat(modelB.id, 'intruder'));

    expect(res.status).toBe(403);
    expect(res.json.error).toMatchObject({ code: 'forbidden', field: 'model' });
    expect(await snapshot()).toEqual(before);
  });

  it("hides app B's runs from app A's key: filtered from the list, 404 by id, 403 by model filter", async () => {
    const runB = uid('run-b-');
    const runA = uid('run-a-');
    for (const [id, model] of [
      [runB, modelB.id],
      [runA, modelA.id],
    ] as const) {
      await db
        .insertInto('runs')
        .values({ id, workflow_id: `pipeline:${model}`, model_id: model, status: 'succeeded', trigger: 'test' })
        .execute();
    }

    const listA = await call('GET', '/v1/runs', { key: keys.appA });
    const byIdA = await call('GET', `/v1/runs/${runB}`, { key: keys.appA });
    const byModelA = await call('GET', `/v1/runs?model=${modelB.id}`, { key: keys.appA });
    const byIdB = await call('GET', `/v1/runs/${runB}`, { key: keys.appB });
    const listOps = await call('GET', '/v1/runs', { key: keys.operator });

    expect(listA.status).toBe(200);
    const idsA = listA.json.runs.map((r: { id: string }) => r.id);
    expect(idsA).toContain(runA);
    expect(idsA).not.toContain(runB);
    expect(listA.json.runs.every((r: { model: string }) => r.model === modelA.id)).toBe(true);
    expect(byIdA.status).toBe(404);
    expect(byIdA.json.error.code).toBe('run_not_found');
    expect(byModelA.status).toBe(403);
    expect(byModelA.json.error).toMatchObject({ code: 'forbidden', field: 'query.model' });
    expect(byIdB.status).toBe(200);
    expect(byIdB.json.run).toMatchObject({ id: runB, model: modelB.id, status: 'succeeded' });
    expect(listOps.json.runs.map((r: { id: string }) => r.id)).toEqual(expect.arrayContaining([runA, runB]));
  });

  it("refuses app A's key setting consent for app B's subjects via ?app= (403) and writes nothing", async () => {
    const before = await snapshot();

    const res = await call('PUT', `/v1/subjects/someone/consent?app=${modelB.app}`, {
      key: keys.appA,
      body: { training: true, policyVersion: 'v1' },
    });

    expect(res.status).toBe(403);
    expect(res.json.error).toMatchObject({ code: 'forbidden', field: 'query.app' });
    expect(await snapshot()).toEqual(before);
  });
});

describe('POST /v1/interactions', () => {
  it('stores one interaction (201) and a batch (201) with accepted counts', async () => {
    const before = await countRows(db, 'interactions');

    const one = await post('/v1/interactions', keys.appA, chat(modelA.id, 'single', { id: uid('ext-') }));
    const batch = await post('/v1/interactions', keys.appA, {
      interactions: [chat(modelA.id, 'b1'), chat(modelA.id, 'b2'), chat(modelA.id, 'b3')],
    });

    expect(one.status).toBe(201);
    expect(one.json).toMatchObject({ accepted: 1, duplicates: 0 });
    expect(batch.status).toBe(201);
    expect(batch.json).toMatchObject({ accepted: 3, duplicates: 0 });
    expect(batch.json.interactions).toHaveLength(3);
    expect(await countRows(db, 'interactions')).toBe(before + 4);
  });

  it('is idempotent on id: a retry answers 200 with duplicates: 1 and the same interaction, still one row', async () => {
    const id = uid('ext-');
    const first = await post('/v1/interactions', keys.appA, chat(modelA.id, 'retry', { id }));

    const retry = await post('/v1/interactions', keys.appA, chat(modelA.id, 'retry', { id }));

    expect(first.status).toBe(201);
    expect(retry.status).toBe(200);
    expect(retry.json).toMatchObject({ accepted: 0, duplicates: 1 });
    expect(retry.json.interactions[0]).toMatchObject({ id: first.json.interactions[0].id, duplicate: true });
    const rows = await db.selectFrom('interactions').select('id').where('external_id', '=', id).execute();
    expect(rows).toHaveLength(1);
  });

  it('stores all three shapes canonically as chat messages', async () => {
    const ids = { messages: uid('m-'), prompt: uid('p-'), instruction: uid('i-'), bare: uid('b-') };

    const res = await post('/v1/interactions', keys.appA, {
      interactions: [
        chat(modelA.id, 'shapes', { id: ids.messages }),
        { id: ids.prompt, model: modelA.id, subject: 'shapes', prompt: 'What is 2+2?', completion: '4' },
        {
          id: ids.instruction,
          model: modelA.id,
          subject: 'shapes',
          instruction: 'Translate to French',
          input: 'cheese',
          output: 'fromage',
        },
        { id: ids.bare, model: modelA.id, subject: 'shapes', instruction: 'Say hi', output: 'hi' },
      ],
    });

    expect(res.status).toBe(201);
    expect(await storedMessages(modelA.id, ids.messages)).toEqual([
      { role: 'user', content: 'question from shapes' },
      { role: 'assistant', content: 'answer to shapes' },
    ]);
    expect(await storedMessages(modelA.id, ids.prompt)).toEqual([
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: '4' },
    ]);
    expect(await storedMessages(modelA.id, ids.instruction)).toEqual([
      { role: 'user', content: 'Translate to French\n\ncheese' },
      { role: 'assistant', content: 'fromage' },
    ]);
    expect(await storedMessages(modelA.id, ids.bare)).toEqual([
      { role: 'user', content: 'Say hi' },
      { role: 'assistant', content: 'hi' },
    ]);
  });

  it('rejects an unknown field with 400 naming it, and writes nothing', async () => {
    const before = await snapshot();

    const res = await post('/v1/interactions', keys.appA, chat(modelA.id, 'x', { extra: 1 }));

    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'invalid_request', field: 'body.extra' });
    expect(await snapshot()).toEqual(before);
  });

  it('rejects a bad role in messages with 400 naming the field path', async () => {
    const before = await snapshot();

    const res = await post('/v1/interactions', keys.appA, {
      model: modelA.id,
      subject: 'x',
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'robot', content: 'beep' },
      ],
    });

    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'invalid_request', field: 'body.messages.1.role' });
    expect(await snapshot()).toEqual(before);
  });

  it('rejects a batch of 501 with 400 naming the cap of 500, and writes nothing', async () => {
    const before = await snapshot();
    const items = Array.from({ length: 501 }, (_, i) => ({
      model: modelA.id,
      subject: `s${i}`,
      prompt: 'p',
      completion: 'c',
    }));

    const res = await post('/v1/interactions', keys.appA, { interactions: items });

    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'invalid_request', field: 'body.interactions' });
    expect(res.json.error.message).toContain('at most 500');
    expect(await snapshot()).toEqual(before);
  });

  it('rejects a whole batch (400, nothing written) when one item is invalid', async () => {
    const before = await snapshot();

    const res = await post('/v1/interactions', keys.appA, {
      interactions: [
        chat(modelA.id, 'good-1'),
        { model: modelA.id, subject: 'bad', prompt: 42, completion: 'a number is not a prompt' },
        chat(modelA.id, 'good-2'),
      ],
    });

    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'invalid_request', field: 'body.interactions.1.prompt' });
    expect(await snapshot()).toEqual(before);
  });

  it('answers 400 invalid_json for malformed JSON, and writes nothing', async () => {
    const before = await snapshot();

    const res = await call('POST', '/v1/interactions', { key: keys.appA, raw: '{"model": "x",' });

    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'invalid_json', field: 'body' });
    expect(await snapshot()).toEqual(before);
  });

  it('answers 413 payload_too_large for a body over the limit, and writes nothing', async () => {
    const before = await snapshot();
    const big = { model: modelA.id, subject: 'big', prompt: 'x'.repeat(70 * 1024), completion: 'y' };

    const res = await post('/v1/interactions', keys.appA, big);

    expect(res.status).toBe(413);
    expect(res.json.error).toMatchObject({ code: 'payload_too_large', field: 'body' });
    expect(await snapshot()).toEqual(before);
  });

  it('answers 415 for a body that is not application/json, and writes nothing', async () => {
    const before = await snapshot();

    const res = await call('POST', '/v1/interactions', {
      key: keys.appA,
      raw: JSON.stringify(chat(modelA.id, 'text')),
      contentType: 'text/plain',
    });

    expect(res.status).toBe(415);
    expect(res.json.error).toMatchObject({ code: 'unsupported_media_type', field: 'body' });
    expect(await snapshot()).toEqual(before);
  });

  it('rejects text holding U+0000 with 400 naming the field, not a 500 from the database, and writes nothing', async () => {
    // PostgreSQL text and jsonb cannot store U+0000; it is the client's error, and a retry would fail the same way.
    const before = await snapshot();
    const turns = (user: string) => [
      { role: 'user', content: user },
      { role: 'assistant', content: 'ok' },
    ];

    const inContent = await post(
      '/v1/interactions',
      keys.appA,
      chat(modelA.id, 'nul', { messages: turns('a\u0000b') }),
    );
    const inSubject = await post('/v1/interactions', keys.appA, chat(modelA.id, 'n\u0000ul'));
    const inMetadata = await post('/v1/interactions', keys.appA, {
      interactions: [chat(modelA.id, 'nul'), chat(modelA.id, 'nul', { metadata: { k: 'v\u0000' } })],
    });
    const inParam = await call('PUT', '/v1/subjects/a%00b/consent', {
      key: keys.appA,
      body: { training: true, policyVersion: 'v1' },
    });

    expect([inContent, inSubject, inMetadata, inParam].map((r) => [r.status, r.json.error.field])).toEqual([
      [400, 'body.messages.0.content'],
      [400, 'body.subject'],
      [400, 'body.interactions.1.metadata.k'],
      [400, 'params.id'],
    ]);
    expect(await snapshot()).toEqual(before);
  });

  it('answers 404 model_not_found to an admin key for a model that does not exist', async () => {
    const before = await snapshot();

    const res = await post('/v1/interactions', keys.admin, chat(uid('missing-'), 'x'));

    expect(res.status).toBe(404);
    expect(res.json.error).toMatchObject({ code: 'model_not_found', field: 'model' });
    expect(await snapshot()).toEqual(before);
  });

  it('lets an admin key write to any app’s model', async () => {
    const res = await post('/v1/interactions', keys.admin, chat(modelB.id, 'admin-written'));

    expect(res.status).toBe(201);
    expect(res.json.accepted).toBe(1);
  });
});

describe('PUT /v1/subjects/:id/consent', () => {
  it('sets consent: the subject row, a consent event and an audit entry', async () => {
    const subject = uid('subj-');

    const res = await call('PUT', `/v1/subjects/${subject}/consent`, {
      key: keys.appA,
      body: { training: true, policyVersion: 'v2' },
    });

    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ subject, app: modelA.app, training: true, policyVersion: 'v2' });
    const row = await db
      .selectFrom('subjects')
      .selectAll()
      .where('app_id', '=', modelA.app)
      .where('external_id', '=', subject)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ training_consent: true, consent_policy_version: 'v2' });
    const events = await db.selectFrom('consent_events').selectAll().where('subject_id', '=', row.id).execute();
    expect(events).toEqual([expect.objectContaining({ training: true, policy_version: 'v2' })]);
    const audit = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'consent.set')
      .where('target_id', '=', row.id)
      .execute();
    expect(audit).toHaveLength(1);
    expect(audit[0]!.actor).toMatch(/^key:[a-f0-9]{12}\(app-a\)$/);
    expect(audit[0]!.details).toEqual({ app: modelA.app, training: true, policyVersion: 'v2' });
  });

  it('records a withdrawal as a second event and updates the subject', async () => {
    const subject = uid('subj-');
    const path = `/v1/subjects/${subject}/consent`;
    await call('PUT', path, { key: keys.appA, body: { training: true, policyVersion: 'v1' } });

    const res = await call('PUT', path, { key: keys.appA, body: { training: false, policyVersion: 'v1' } });

    expect(res.status).toBe(200);
    expect(res.json.training).toBe(false);
    const row = await db
      .selectFrom('subjects')
      .selectAll()
      .where('app_id', '=', modelA.app)
      .where('external_id', '=', subject)
      .executeTakeFirstOrThrow();
    expect(row.training_consent).toBe(false);
    const events = await db
      .selectFrom('consent_events')
      .select('training')
      .where('subject_id', '=', row.id)
      .orderBy('id')
      .execute();
    expect(events.map((e) => e.training)).toEqual([true, false]);
  });

  it('rejects an unknown or missing body field with 400 naming it, and writes nothing', async () => {
    const before = await snapshot();

    const extra = await call('PUT', '/v1/subjects/strict/consent', {
      key: keys.appA,
      body: { training: true, policyVersion: 'v1', scope: 'all' },
    });
    const missing = await call('PUT', '/v1/subjects/strict/consent', { key: keys.appA, body: { training: 'yes' } });

    expect(extra.status).toBe(400);
    expect(extra.json.error).toMatchObject({ code: 'invalid_request', field: 'body.scope' });
    expect(missing.status).toBe(400);
    expect(missing.json.error).toMatchObject({ code: 'invalid_request', field: 'body.training' });
    expect(await snapshot()).toEqual(before);
  });

  it('asks an admin key to name the app (400 query.app) and answers 404 for an app that does not exist', async () => {
    const before = await snapshot();
    const body = { training: true, policyVersion: 'v1' };

    const unnamed = await call('PUT', '/v1/subjects/s/consent', { key: keys.admin, body });
    const missing = await call('PUT', `/v1/subjects/s/consent?app=${uid('no-app-')}`, { key: keys.admin, body });

    expect(unnamed.status).toBe(400);
    expect(unnamed.json.error).toMatchObject({ code: 'invalid_request', field: 'query.app' });
    expect(missing.status).toBe(404);
    expect(missing.json.error).toMatchObject({ code: 'app_not_found', field: 'query.app' });
    expect(await snapshot()).toEqual(before);
  });
});

describe('runs', () => {
  const finished = ['succeeded', 'insufficient_data'];

  it('starts one run for two concurrent requests (202 + Location), runs it to the end and refuses to cancel it', async () => {
    // Arrange: a model with consented data, written through the API as an app would.
    const model = await createTestModel(db, { id: uid('model-r-'), app: modelA.app });
    const appKey = await newKey({ name: 'app-r', role: 'app', appId: model.app, models: [model.id] });
    const written = await post('/v1/interactions', appKey, {
      interactions: ['ann', 'ann', 'ben', 'cy'].map((s, i) => ({
        model: model.id,
        subject: s,
        prompt: `question ${i}`,
        completion: `answer ${i}`,
      })),
    });
    expect(written.status).toBe(201);
    for (const s of ['ann', 'ben'])
      await call('PUT', `/v1/subjects/${s}/consent`, { key: appKey, body: { training: true, policyVersion: 'v1' } });

    // Act
    const [a, b] = await Promise.all([
      post('/v1/runs', keys.operator, { model: model.id }),
      post('/v1/runs', keys.operator, { model: model.id }),
    ]);

    // Assert: one run, one row, addressed by Location
    expect([a.status, b.status]).toEqual([202, 202]);
    expect(a.json.id).toBe(b.json.id);
    expect(a.headers.get('location')).toBe(`/v1/runs/${a.json.id}`);
    expect(a.json).toMatchObject({ model: model.id, status: 'running', workflowId: `pipeline:${model.id}` });
    const rows = await db.selectFrom('runs').select('id').where('model_id', '=', model.id).execute();
    expect(rows).toEqual([{ id: a.json.id }]);

    let run: Reply | undefined;
    await expect
      .poll(
        async () => {
          run = await call('GET', a.headers.get('location')!, { key: keys.operator });
          return run.json.run.status;
        },
        { timeout: 60_000, interval: 250 },
      )
      .toSatisfy((s: string) => finished.includes(s));
    expect(run!.status).toBe(200);
    expect(run!.json.run).toMatchObject({ id: a.json.id, model: model.id, status: 'succeeded', trigger: 'api' });
    expect(run!.json.run.stages.map((s: { name: string }) => s.name)).toEqual(
      expect.arrayContaining(['collect', 'export']),
    );
    const collect = run!.json.run.stages.find((s: { name: string }) => s.name === 'collect');
    expect(collect.summary).toMatchObject({ interactions: 4, consented: 3 });
    // The app that owns the model sees its run; another app does not.
    expect((await call('GET', `/v1/runs/${a.json.id}`, { key: appKey })).status).toBe(200);
    expect((await call('GET', `/v1/runs/${a.json.id}`, { key: keys.appB })).status).toBe(404);

    const before = await snapshot();
    const cancel = await call('POST', `/v1/runs/${a.json.id}/cancel`, { key: keys.operator });
    expect(cancel.status).toBe(409);
    expect(cancel.json.error.code).toBe('run_not_running');
    expect(await snapshot()).toEqual(before);

    const audit = await db
      .selectFrom('audit_log')
      .select(['actor', 'action'])
      .where('target_id', '=', a.json.id)
      .execute();
    expect(audit.filter((e) => e.action === 'run.request')).toHaveLength(2);
    expect(audit.filter((e) => e.action === 'run.cancel')).toEqual([]);
  });

  it('answers 404 model_not_found for a run of a model that does not exist, and starts nothing', async () => {
    const before = await snapshot();

    const res = await post('/v1/runs', keys.operator, { model: uid('missing-') });

    expect(res.status).toBe(404);
    expect(res.json.error).toMatchObject({ code: 'model_not_found', field: 'body.model' });
    expect(await snapshot()).toEqual(before);
  });

  it('answers 404 for an unknown run id, on read and on cancel', async () => {
    const read = await call('GET', '/v1/runs/does-not-exist', { key: keys.operator });
    const cancel = await call('POST', '/v1/runs/does-not-exist/cancel', { key: keys.operator });

    expect(read.status).toBe(404);
    expect(read.json.error.code).toBe('run_not_found');
    expect(cancel.status).toBe(404);
    expect(cancel.json.error.code).toBe('run_not_found');
  });

  it('rejects a bad run query with 400 naming the field', async () => {
    const res = await call('GET', '/v1/runs?limit=0', { key: keys.operator });

    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'invalid_request', field: 'query.limit' });
  });
});

describe('health and error hygiene', () => {
  it('answers /healthz with 200 without a key', async () => {
    const res = await call('GET', '/healthz');

    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: 'ok' });
  });

  it('answers /readyz with 200 and every dependency ok', async () => {
    const res = await call('GET', '/readyz');

    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      status: 'ready',
      checks: { database: { ok: true }, temporal: { ok: true }, store: { ok: true } },
    });
  });

  it('answers an unknown route with a JSON 404 and no stack trace', async () => {
    const res = await call('GET', '/nope');

    expect(res.status).toBe(404);
    expect(res.json).toEqual({ error: { code: 'not_found', message: 'no route for GET /nope' } });
  });

  it('answers a 500 with a generic body: no stack trace, no database detail', async () => {
    // A table missing mid-transaction is the simplest real 500 to provoke: the subject row goes in first.
    const before = await snapshot();
    await sql`alter table consent_events rename to consent_events_gone`.execute(db);
    let res: Reply;
    try {
      res = await call('PUT', '/v1/subjects/anyone/consent', {
        key: keys.appA,
        body: { training: true, policyVersion: 'v1' },
      });
    } finally {
      await sql`alter table consent_events_gone rename to consent_events`.execute(db);
    }

    expect(res.status).toBe(500);
    expect(res.json).toEqual({ error: { code: 'internal', message: 'internal error' } });
    expect(res.text).not.toContain('consent_events');
    expect(await snapshot()).toEqual(before);
  });
});
