import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import { insertInteractions } from '../../src/db/queries/interactions';
import type { ModelDefinition } from '../../src/domain/model-config';
import { MAX_TEXT_CHARS } from '../../src/ingest/text';
import { closeServer } from '../../src/embedded/stack';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  temporalClient,
  testLog,
  testOllama,
  uid,
} from '../helpers/env';

/**
 * Ingestion over HTTP: interactions (validation shared with `tuneloop import`, set-based batch writes, idempotency)
 * and feedback. The app runs with the production body limit (1 MB). Every refusal is followed by a check that no
 * table an ingestion could touch has changed.
 */

let db: Db;
let drop: () => Promise<void>;
let closeClient: () => Promise<void>;
let server: Server;
let baseUrl: string;

let m1: ModelDefinition;
let m2: ModelDefinition;
let mb: ModelDefinition;
/** appOne: model m1 only; appBoth: m1 and m2 (same app); appB: another app's model; operator: no app. */
const keys = { appOne: '', appBoth: '', appB: '', operator: '', admin: '' };

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  const store = await createTestStore();
  const temporal = await temporalClient();
  closeClient = temporal.close;
  const app = createApp({
    db,
    temporal: temporal.client,
    store,
    ollama: testOllama(),
    log: testLog,
    taskQueue: uid('tq-'),
    bodyLimit: '1mb',
  });
  server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const appA = uid('app-a-');
  m1 = await createTestModel(db, { id: uid('m1-'), app: appA });
  m2 = await createTestModel(db, { id: uid('m2-'), app: appA });
  mb = await createTestModel(db, { id: uid('mb-'), app: uid('app-b-') });
  const key = async (input: Parameters<typeof createApiKey>[1]) => (await createApiKey(db, input)).key;
  keys.appOne = await key({ name: 'one', role: 'app', appId: appA, models: [m1.id] });
  keys.appBoth = await key({ name: 'both', role: 'app', appId: appA, models: [m1.id, m2.id] });
  keys.appB = await key({ name: 'b', role: 'app', appId: mb.app, models: [mb.id] });
  keys.operator = await key({ name: 'ops', role: 'operator', appId: null, models: [] });
  keys.admin = await key({ name: 'root', role: 'admin', appId: null, models: [] });
});

afterAll(async () => {
  if (server) await closeServer(server);
  await closeClient?.();
  await drop?.();
});

interface Reply {
  status: number;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are asserted field by field
  json: any;
}

/** A request as a client sends it; `raw` is sent as it is (for JSON that JSON.stringify would never produce). */
async function call(path: string, key: string, body: { json?: unknown; raw?: string }): Promise<Reply> {
  const res = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body.raw ?? JSON.stringify(body.json),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON; the caller asserts on text
  }
  return { status: res.status, text, json };
}

const postInteractions = (key: string, json: unknown) => call('/v1/interactions', key, { json });
const postFeedback = (key: string, id: string, json: unknown, query = '') =>
  call(`/v1/interactions/${encodeURIComponent(id)}/feedback${query}`, key, { json });

/** Row counts of every table an ingestion could touch. */
async function snapshot() {
  const tables = ['interactions', 'subjects', 'feedback', 'consent_events', 'audit_log'] as const;
  const counts = await Promise.all(
    tables.map(async (t) => {
      const r = await sql<{ n: string }>`select count(*) as n from ${sql.table(t)}`.execute(db);
      return [t, Number(r.rows[0]!.n)] as const;
    }),
  );
  return Object.fromEntries(counts) as Record<(typeof tables)[number], number>;
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  subject: 'someone',
  messages: [
    { role: 'user', content: 'How do I reset my password?' },
    { role: 'assistant', content: 'Open Settings, then Security, then Reset password.' },
  ],
  ...extra,
});

const turns = (...contents: [string, string][]) => contents.map(([role, content]) => ({ role, content }));

/** Stores one interaction of `model` through the API and returns tuneloop's id for it. */
async function stored(key: string, model: string, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await postInteractions(key, chat(model, extra));
  expect(res.status).toBe(201);
  return res.json.interactions[0].id;
}

describe('POST /v1/interactions: what is refused, with the field named and nothing written', () => {
  it.each([
    ['an empty subject', { subject: '' }, 'body.subject'],
    ['a whitespace-only subject', { subject: ' \t ' }, 'body.subject'],
    ['a whitespace-only turn', { messages: turns(['user', '   '], ['assistant', 'a']) }, 'body.messages.0.content'],
    ['an empty app id', { id: '' }, 'body.id'],
    [
      'a bell character in a turn',
      { messages: turns(['user', 'ring \u0007'], ['assistant', 'a']) },
      'body.messages.0.content',
    ],
    ['an escape sequence in the subject', { subject: '\u001b[31mred' }, 'body.subject'],
    ['DEL in a turn', { messages: turns(['user', 'q'], ['assistant', 'a\u007f']) }, 'body.messages.1.content'],
    [
      'two user turns in a row',
      { messages: turns(['user', 'q'], ['user', 'q2'], ['assistant', 'a']) },
      'body.messages.1.role',
    ],
    [
      'a conversation opening with the assistant',
      { messages: turns(['assistant', 'a'], ['user', 'q']) },
      'body.messages.0.role',
    ],
    [
      'a system turn after the first',
      { messages: turns(['user', 'q'], ['system', 's'], ['assistant', 'a']) },
      'body.messages.1.role',
    ],
    ['no assistant turn', { messages: turns(['system', 's'], ['user', 'q']) }, 'body.messages'],
    [
      'a last turn by the user',
      { messages: turns(['user', 'q'], ['assistant', 'a'], ['user', 'q2']) },
      'body.messages',
    ],
    ['messages that are not a list', { messages: 'hello' }, 'body.messages'],
    ['two shapes at once', { prompt: 'p', completion: 'c' }, 'body.messages'],
    ['metadata that is a list', { metadata: ['a'] }, 'body.metadata'],
    ['metadata nested 6 deep', { metadata: { a: { b: { c: { d: { e: { f: 1 } } } } } } }, 'body.metadata.a.b.c.d.e'],
    ['metadata over 16 KB', { metadata: { context: 'x'.repeat(17_000) } }, 'body.metadata'],
    ['a metadata key over 100 characters', { metadata: { ['k'.repeat(101)]: 1 } }, `body.metadata.${'k'.repeat(101)}`],
    ['a control character in a metadata value', { metadata: { mood: ['ok', 'bad\u0002'] } }, 'body.metadata.mood.1'],
  ])('refuses %s (400)', async (_what, patch, field) => {
    const before = await snapshot();

    const res = await postInteractions(keys.appOne, chat(m1.id, patch));

    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'invalid_request', field });
    expect(res.json.error.message).toMatch(new RegExp(`^${field.replace(/\./g, '\\.')}: `));
    expect(await snapshot()).toEqual(before);
  });

  it.each([
    ['a prompt', (s: string) => `{"model":"M","subject":"u","prompt":"${s}","completion":"c"}`, 'body.prompt'],
    ['a subject', (s: string) => `{"model":"M","subject":"${s}","prompt":"p","completion":"c"}`, 'body.subject'],
    [
      'a metadata key',
      (s: string) => `{"model":"M","subject":"u","prompt":"p","completion":"c","metadata":{"k${s}":1}}`,
      'body.metadata.kx\ud800y',
    ],
    [
      'a metadata value',
      (s: string) => `{"model":"M","subject":"u","prompt":"p","completion":"c","metadata":{"k":["${s}"]}}`,
      'body.metadata.k.0',
    ],
  ])('refuses a lone surrogate (\\ud800 escape) in %s with 400, not a 500 from jsonb', async (_what, body, field) => {
    const before = await snapshot();

    const res = await call('/v1/interactions', keys.appOne, { raw: body('x\\ud800y').replace('"M"', `"${m1.id}"`) });

    expect(res.status).toBe(400);
    expect(res.json.error.field).toBe(field);
    expect(res.json.error.message).toContain('unpaired UTF-16 surrogate');
    expect(await snapshot()).toEqual(before);
  });

  it('accepts a correctly paired surrogate escape (an emoji) and tab, LF and CR in text', async () => {
    const id = uid('emoji-');
    const raw = JSON.stringify(
      chat(m1.id, { id, messages: turns(['user', 'a\tb\r\nc'], ['assistant', 'PLACEHOLDER']) }),
    );

    const res = await call('/v1/interactions', keys.appOne, { raw: raw.replace('PLACEHOLDER', 'ok \\ud83d\\ude00') });

    expect(res.status).toBe(201);
    const row = await db
      .selectFrom('interactions')
      .select('messages')
      .where('external_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(row.messages.map((m) => m.content)).toEqual(['a\tb\r\nc', 'ok 😀']);
  });

  it('answers 400 invalid_json for malformed JSON and 400 for a body of the wrong type', async () => {
    const before = await snapshot();

    const malformed = await call('/v1/interactions', keys.appOne, { raw: '{"model": ' });
    const list = await postInteractions(keys.appOne, [chat(m1.id)]);
    const badBatch = await postInteractions(keys.appOne, { interactions: 'all of them' });
    const emptyBatch = await postInteractions(keys.appOne, { interactions: [] });

    expect(malformed.status).toBe(400);
    expect(malformed.json.error).toMatchObject({ code: 'invalid_json', field: 'body' });
    expect([list, badBatch, emptyBatch].map((r) => [r.status, r.json.error.field])).toEqual([
      [400, 'body'],
      [400, 'body.interactions'],
      [400, 'body.interactions'],
    ]);
    expect(await snapshot()).toEqual(before);
  });

  it('answers 413 for a 10 MB string (the body limit) and 400 naming the field for one over the field cap', async () => {
    const before = await snapshot();

    const huge = await postInteractions(keys.appOne, {
      model: m1.id,
      subject: 'u',
      prompt: 'x'.repeat(10 * 1024 * 1024),
      completion: 'c',
    });
    const long = await postInteractions(keys.appOne, {
      model: m1.id,
      subject: 'u',
      prompt: 'p',
      completion: 'y'.repeat(MAX_TEXT_CHARS + 1),
    });

    expect(huge.status).toBe(413);
    expect(huge.json.error).toMatchObject({ code: 'payload_too_large', field: 'body' });
    expect(long.status).toBe(400);
    expect(long.json.error).toMatchObject({
      field: 'body.completion',
      message: `body.completion: at most ${MAX_TEXT_CHARS} characters`,
    });
    expect(await snapshot()).toEqual(before);
  });

  it('answers 404 for an unknown model and writes nothing of the batch', async () => {
    const before = await snapshot();

    const res = await postInteractions(keys.admin, { interactions: [chat(m1.id), chat(uid('missing-'))] });

    expect(res.status).toBe(404);
    expect(res.json.error).toMatchObject({ code: 'model_not_found', field: 'model' });
    expect(await snapshot()).toEqual(before);
  });
});

describe('POST /v1/interactions: what is stored', () => {
  it('keeps app metadata as nested JSON, as sent', async () => {
    const id = uid('meta-');
    const metadata = {
      category: 'billing',
      difficulty: 4,
      mood: null,
      escalated: false,
      context: { screen: 'invoices', tags: ['refund', 'eu'], history: [{ turn: 1, ok: true }] },
    };

    const res = await postInteractions(keys.appOne, chat(m1.id, { id, metadata }));

    expect(res.status).toBe(201);
    const row = await db
      .selectFrom('interactions')
      .select('metadata')
      .where('external_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(row.metadata).toEqual(metadata);
  });

  it('stores a batch in input order and, within it, a repeated id once', async () => {
    const [a, b] = [uid('a-'), uid('b-')];
    const before = await snapshot();

    const res = await postInteractions(keys.appBoth, {
      interactions: [
        chat(m1.id, { id: a, subject: 's1' }),
        chat(m1.id, { subject: 's2' }),
        chat(m1.id, { id: a, subject: 's1' }),
        chat(m2.id, { id: a, subject: 's3' }),
        chat(m1.id, { id: b, subject: 's1' }),
        chat(m1.id, { subject: 's2' }),
      ],
    });

    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ accepted: 5, duplicates: 1 });
    const out = res.json.interactions as { id: string; externalId: string | null; duplicate: boolean }[];
    expect(out.map((o) => [o.externalId, o.duplicate])).toEqual([
      [a, false],
      [null, false],
      [a, true],
      [a, false], // the same app id under another model is another interaction
      [b, false],
      [null, false],
    ]);
    expect(out[2]!.id).toBe(out[0]!.id);
    expect(new Set(out.map((o) => o.id)).size).toBe(5);
    const after = await snapshot();
    expect(after.interactions - before.interactions).toBe(5);
  });

  it('answers a retried batch with the same ids, all duplicates (200), and a partly new one with both', async () => {
    const ids = Array.from({ length: 4 }, () => uid('r-'));
    const batch = ids.map((id, i) => chat(m1.id, { id, subject: `retry-${i % 2}` }));
    const newcomer = uid('newcomer-');
    const first = await postInteractions(keys.appOne, { interactions: batch });
    const before = await snapshot();

    const retry = await postInteractions(keys.appOne, { interactions: batch });
    const mixed = await postInteractions(keys.appOne, {
      interactions: [chat(m1.id, { id: uid('new-'), subject: newcomer }), batch[2], chat(m1.id, { id: uid('new-') })],
    });

    expect(first.status).toBe(201);
    expect(retry.status).toBe(200);
    expect(retry.json).toMatchObject({ accepted: 0, duplicates: 4 });
    expect(retry.json.interactions).toEqual(
      first.json.interactions.map((i: { id: string; externalId: string }) => ({ ...i, duplicate: true })),
    );
    expect(mixed.status).toBe(201);
    expect(mixed.json.interactions.map((i: { duplicate: boolean }) => i.duplicate)).toEqual([false, true, false]);
    expect(mixed.json.interactions[1].id).toBe(first.json.interactions[2].id);
    const after = await snapshot();
    expect(after.interactions - before.interactions).toBe(2);
    expect(after.subjects).toBe(before.subjects + 1); // only the newcomer
  });

  it('never duplicates under concurrent retries of the same batch', async () => {
    const batch = Array.from({ length: 50 }, (_, i) => chat(m1.id, { id: uid('c-'), subject: uid(`c${i}-`) }));
    const before = await snapshot();

    const replies = await Promise.all(
      Array.from({ length: 4 }, () => postInteractions(keys.appOne, { interactions: batch })),
    );

    expect(replies.map((r) => r.status).sort()).toEqual([200, 200, 200, 201]);
    const after = await snapshot();
    expect(after.interactions - before.interactions).toBe(50);
    expect(after.subjects - before.subjects).toBe(50);
    for (const r of replies.slice(1))
      expect(r.json.interactions.map((i: { id: string }) => i.id)).toEqual(
        replies[0]!.json.interactions.map((i: { id: string }) => i.id),
      );
  });

  it('commits concurrent batches that name the same new subjects or app ids in opposite orders (no deadlock)', async () => {
    // Straight through the insert function with large batches: over HTTP the statements rarely overlap long enough.
    // In input order, two such batches each wait for a row the other has just inserted and PostgreSQL aborts one.
    const write = (order: string[], subject: (s: string) => string, withIds: boolean) =>
      db.transaction().execute((trx) =>
        insertInteractions(
          trx,
          order.map((s) => ({
            appId: m1.app,
            model: m1.id,
            subject: subject(s),
            ...(withIds ? { id: s } : {}),
            messages: [
              { role: 'user' as const, content: 'q' },
              { role: 'assistant' as const, content: 'a' },
            ],
            source: 'test',
          })),
        ),
      );
    for (let round = 0; round < 3; round++) {
      const names = Array.from({ length: 2000 }, (_, i) => uid(`dl-${i}-`));
      const reversed = [...names].reverse();
      const before = await snapshot();

      const sharedSubjects = await Promise.allSettled([
        write(names, (s) => s, false),
        write(reversed, (s) => s, false),
      ]);
      const sharedIds = await Promise.allSettled([
        write(names, (s) => `a-${s}`, true),
        write(reversed, (s) => `b-${s}`, true),
      ]);

      expect([...sharedSubjects, ...sharedIds].map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))).toEqual(
        ['ok', 'ok', 'ok', 'ok'],
      );
      const after = await snapshot();
      expect(after.interactions - before.interactions).toBe(4000 + 2000);
    }
  });

  it('stores a full batch of 500 (each with its own subject) in one request', async () => {
    const before = await snapshot();
    const items = Array.from({ length: 500 }, (_, i) => ({
      id: uid('full-'),
      model: m1.id,
      subject: uid(`full-${i}-`),
      instruction: `Summarise ticket ${i}`,
      input: i % 2 ? `ticket body ${i}` : '',
      output: `summary ${i}`,
      metadata: { category: 'support', n: i },
    }));

    const res = await postInteractions(keys.appOne, { interactions: items });

    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ accepted: 500, duplicates: 0 });
    expect(res.json.interactions.map((i: { externalId: string }) => i.externalId)).toEqual(items.map((i) => i.id));
    const after = await snapshot();
    expect([after.interactions - before.interactions, after.subjects - before.subjects]).toEqual([500, 500]);
  });
});

describe('POST /v1/interactions/:id/feedback', () => {
  const feedbackRows = (interactionId: string) =>
    db.selectFrom('feedback').selectAll().where('interaction_id', '=', interactionId).orderBy('created_at').execute();

  it('stores feedback on an interaction named by tuneloop’s id (201) and answers with it', async () => {
    const interaction = await stored(keys.appOne, m1.id);

    const res = await postFeedback(keys.appOne, interaction, {
      thumbs: 'down',
      rating: 2,
      correction: 'Settings → Security → Reset password, then check your e-mail.',
      comment: 'missed the e-mail step',
    });

    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      duplicate: false,
      feedback: {
        interaction,
        model: m1.id,
        externalId: null,
        thumbs: 'down',
        rating: 2,
        correction: 'Settings → Security → Reset password, then check your e-mail.',
        comment: 'missed the e-mail step',
      },
    });
    const rows = await feedbackRows(interaction);
    expect(rows).toEqual([expect.objectContaining({ id: res.json.feedback.id, thumbs: 'down', rating: 2 })]);
  });

  it('finds the interaction by the app’s own id and keeps several feedbacks on it', async () => {
    const appId = uid('ext-');
    const interaction = await stored(keys.appOne, m1.id, { id: appId });

    const first = await postFeedback(keys.appOne, appId, { thumbs: 'up' });
    const second = await postFeedback(keys.appOne, appId, { rating: 5 });

    expect([first.status, second.status]).toEqual([201, 201]);
    expect(first.json.feedback.interaction).toBe(interaction);
    expect((await feedbackRows(interaction)).map((r) => [r.thumbs, r.rating])).toEqual([
      ['up', null],
      [null, 5],
    ]);
  });

  it('is idempotent on the app’s feedback id: a retry answers 200 with the stored feedback, one row', async () => {
    const interaction = await stored(keys.appOne, m1.id);
    const fid = uid('fb-');
    const first = await postFeedback(keys.appOne, interaction, { id: fid, thumbs: 'up' });
    const before = await snapshot();

    const retry = await postFeedback(keys.appOne, interaction, { id: fid, thumbs: 'up' });

    expect(first.status).toBe(201);
    expect(retry.status).toBe(200);
    expect(retry.json).toEqual({ ...first.json, duplicate: true });
    expect(await snapshot()).toEqual(before);
    // The same feedback id on another interaction is another feedback.
    const other = await stored(keys.appOne, m1.id);
    expect((await postFeedback(keys.appOne, other, { id: fid, thumbs: 'down' })).status).toBe(201);
  });

  it('asks for ?model= (409) when the app id names interactions of two models of the key', async () => {
    const appId = uid('twice-');
    await stored(keys.appBoth, m1.id, { id: appId });
    const second = await stored(keys.appBoth, m2.id, { id: appId });
    const before = await snapshot();

    const ambiguous = await postFeedback(keys.appBoth, appId, { thumbs: 'up' });
    const afterAmbiguous = await snapshot();
    const named = await postFeedback(keys.appBoth, appId, { thumbs: 'up' }, `?model=${m2.id}`);
    const singleModelKey = await postFeedback(keys.appOne, appId, { thumbs: 'up' });

    expect(ambiguous.status).toBe(409);
    expect(ambiguous.json.error).toMatchObject({ code: 'ambiguous_interaction', field: 'query.model' });
    expect(ambiguous.json.error.message).toContain('?model=');
    expect(afterAmbiguous).toEqual(before);
    expect(named.status).toBe(201);
    expect(named.json.feedback).toMatchObject({ interaction: second, model: m2.id });
    // A key that covers one of the two models is not ambiguous.
    expect(singleModelKey.status).toBe(201);
    expect(singleModelKey.json.feedback.model).toBe(m1.id);
  });

  it('answers the same 404 for an interaction that does not exist and one of another app, by either id', async () => {
    const appId = uid('theirs-');
    const theirs = await stored(keys.appB, mb.id, { id: appId });
    const missing = '00000000-0000-4000-8000-000000000000';
    const before = await snapshot();

    const replies = await Promise.all([
      postFeedback(keys.appOne, theirs, { thumbs: 'up' }),
      postFeedback(keys.appOne, missing, { thumbs: 'up' }),
      postFeedback(keys.appOne, appId, { thumbs: 'up' }),
      postFeedback(keys.appOne, uid('never-'), { thumbs: 'up' }),
    ]);

    const normalised = replies.map((r, i) => ({
      status: r.status,
      error: {
        ...r.json.error,
        message: r.json.error.message.replace([theirs, missing, appId][i] ?? /never-\w+/, 'ID'),
      },
    }));
    expect(new Set(normalised.map((n) => JSON.stringify(n))).size).toBe(1);
    expect(normalised[0]).toEqual({
      status: 404,
      error: { code: 'interaction_not_found', message: 'interaction ID not found', field: 'params.id' },
    });
    expect(await snapshot()).toEqual(before);
  });

  it('does not reach an interaction of its own app under a model the key does not cover', async () => {
    const onM2 = await stored(keys.appBoth, m2.id);
    const before = await snapshot();

    const byId = await postFeedback(keys.appOne, onM2, { thumbs: 'up' });
    const byModel = await postFeedback(keys.appOne, onM2, { thumbs: 'up' }, `?model=${m2.id}`);

    expect(byId.status).toBe(404);
    expect(byModel.status).toBe(403);
    expect(byModel.json.error).toMatchObject({ code: 'forbidden', field: 'query.model' });
    expect(await snapshot()).toEqual(before);
  });

  it.each([
    ['no thumbs, rating or correction', { comment: 'just a note' }, 'body'],
    ['a rating of 0', { rating: 0 }, 'body.rating'],
    ['a rating of 6', { rating: 6 }, 'body.rating'],
    ['a fractional rating', { rating: 3.5 }, 'body.rating'],
    ['an unknown thumb', { thumbs: 'meh' }, 'body.thumbs'],
    ['a whitespace-only correction', { correction: '  ' }, 'body.correction'],
    ['an unknown field', { thumbs: 'up', stars: 4 }, 'body.stars'],
    ['a control character in the comment', { thumbs: 'up', comment: 'a\u0008b' }, 'body.comment'],
  ])('refuses %s (400) and writes nothing', async (_what, body, field) => {
    const interaction = await stored(keys.appOne, m1.id);
    const before = await snapshot();

    const res = await postFeedback(keys.appOne, interaction, body);

    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'invalid_request', field });
    expect(await snapshot()).toEqual(before);
  });

  it('refuses a lone surrogate in a correction and a control character in the id, and an operator key', async () => {
    const interaction = await stored(keys.appOne, m1.id);
    const before = await snapshot();

    const surrogate = await call(`/v1/interactions/${interaction}/feedback`, keys.appOne, {
      raw: '{"correction":"a\\udc00"}',
    });
    const control = await postFeedback(keys.appOne, 'id\u0007', { thumbs: 'up' });
    const operator = await postFeedback(keys.operator, interaction, { thumbs: 'up' });
    const badModel = await postFeedback(keys.appOne, interaction, { thumbs: 'up' }, '?model=Not%20A%20Slug');

    expect([surrogate, control, operator, badModel].map((r) => [r.status, r.json.error.field ?? null])).toEqual([
      [400, 'body.correction'],
      [400, 'params.id'],
      [403, null],
      [400, 'query.model'],
    ]);
    expect(await snapshot()).toEqual(before);
  });
});
