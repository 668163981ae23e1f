import type { Client } from '@temporalio/client';
import type { Express } from 'express';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import type { ModelDefinition } from '../../src/domain/model-config';
import { createTestDb, createTestModel, createTestStore, startTestApi, temporalClient, uid } from '../helpers/env';

/**
 * Request bodies whose bytes are not UTF-8. A lossy decoder would store U+FFFD in place of the app's bytes; every
 * route that takes a body must refuse them with a 400 naming the field, and write nothing. The routes are read off
 * the app itself, so a route added later is covered without touching this file.
 */

let db: Db;
let drop: () => Promise<void>;
let closeClient: () => Promise<void>;
let temporal: Client;
let api: Awaited<ReturnType<typeof startTestApi>>;
let model: ModelDefinition;
let admin: string;
let appKey: string;

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  ({ client: temporal, close: closeClient } = await temporalClient());
  api = await startTestApi({ db, temporal, store: await createTestStore(), taskQueue: uid('tq-'), authCacheMs: 0 });
  model = await createTestModel(db);
  admin = (await createApiKey(db, { name: 'root', role: 'admin', appId: null, models: [] })).key;
  appKey = (await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] })).key;
});

afterAll(async () => {
  await api?.close();
  await closeClient?.();
  await drop?.();
});

/** Every (method, path) of the app's routes that can carry a body, from express's own route table. */
function bodyRoutes(app: Express): { method: string; path: string }[] {
  const out: { method: string; path: string }[] = [];
  type Layer = { route?: { path: string; methods: Record<string, boolean> }; handle?: { stack?: Layer[] } };
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const [method, on] of Object.entries(layer.route.methods)) {
          if (on && ['post', 'put', 'patch', 'delete'].includes(method)) {
            out.push({ method: method.toUpperCase(), path: layer.route.path });
          }
        }
      } else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return out;
}

/** Row counts of every table of the database, found in the catalog. */
async function everyTableCount(): Promise<Record<string, number>> {
  const tables = await sql<{ name: string }>`
    select table_name as name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`.execute(db);
  const out: Record<string, number> = {};
  for (const { name } of tables.rows) {
    const r = await sql<{ n: string }>`select count(*) as n from ${sql.table(name)}`.execute(db);
    out[name] = Number(r.rows[0]!.n);
  }
  return out;
}

/** A JSON document with the bytes FF FE inside the string at `field` (a dotted path into `doc`). */
function withBadBytes(doc: Record<string, unknown>, marker: string): Buffer {
  const text = JSON.stringify(doc);
  const at = text.indexOf(marker);
  return Buffer.concat([
    Buffer.from(text.slice(0, at), 'utf8'),
    Buffer.from([0xff, 0xfe]),
    Buffer.from(text.slice(at + marker.length), 'utf8'),
  ]);
}

async function send(method: string, path: string, key: string, body: Buffer, contentType = 'application/json') {
  const res = await fetch(`${api.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': contentType },
    body,
  });
  return {
    status: res.status,
    json: (await res.json()) as { error: { code: string; message: string; field?: string } },
  };
}

describe('request bytes that are not UTF-8', () => {
  it('POST /v1/interactions answers 400 naming the field, and stores nothing', async () => {
    const before = await everyTableCount();
    const doc = {
      model: model.id,
      subject: 'someone',
      messages: [
        { role: 'user', content: 'How many push-ups?' },
        { role: 'assistant', content: 'Start with BAD sets of ten.' },
      ],
    };

    const res = await send('POST', '/v1/interactions', appKey, withBadBytes(doc, 'BAD'));

    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid_utf8');
    expect(res.json.error.field).toBe('body.messages.1.content');
    expect(res.json.error.message).toMatch(/^body\.messages\.1\.content: not valid UTF-8 \(byte 0xFF at offset \d+\)/);
    expect(await everyTableCount()).toEqual(before);
  });

  it('the same body with the bytes as valid UTF-8 is stored (the refusal is about the bytes alone)', async () => {
    const doc = {
      model: model.id,
      subject: 'someone-else',
      messages: [
        { role: 'user', content: 'How many push-ups?' },
        { role: 'assistant', content: 'Start with \uFFFD\uFFFD sets of ten.' },
      ],
    };

    const res = await send('POST', '/v1/interactions', appKey, Buffer.from(JSON.stringify(doc), 'utf8'));

    expect(res.status).toBe(201);
  });

  it('every route that takes a body refuses them the same way, and nothing anywhere changes', async () => {
    // The operator pages' forms are not JSON (their login refuses a mangled key like any wrong one and writes
    // nothing: tests/api/pages.test.ts).
    const routes = bodyRoutes(api.app).filter((r) => !r.path.startsWith('/ui'));
    // The routes this project has today, so that a broken route table cannot make the loop below empty.
    expect(routes.map((r) => `${r.method} ${r.path}`)).toEqual(
      expect.arrayContaining([
        'POST /v1/interactions',
        'POST /v1/interactions/:id/feedback',
        'PUT /v1/subjects/:id/consent',
        'DELETE /v1/subjects/:id',
        'POST /v1/runs',
        'POST /v1/chat',
      ]),
    );
    const before = await everyTableCount();
    for (const route of routes) {
      const path = route.path.replace(/:(\w+)/g, (_m, name: string) => `x-${name}`);
      const query = `?model=${model.id}&app=${model.app}`;
      const body = withBadBytes({ model: model.id, note: 'a BAD value', nested: { list: ['ok', 'BAD2'] } }, 'BAD2');

      const res = await send(route.method, path + query, admin, body);

      expect({ route, status: res.status, code: res.json.error?.code }).toEqual({
        route,
        status: 400,
        code: 'invalid_utf8',
      });
      expect(res.json.error.field).toBe('body.nested.list.1');
    }
    expect(await everyTableCount()).toEqual(before);
  });

  it('a bad byte in a key names the key', async () => {
    const res = await send('POST', '/v1/interactions', appKey, withBadBytes({ model: model.id, metaBAD: 1 }, 'BAD'));

    expect(res.status).toBe(400);
    expect(res.json.error.message).toMatch(/^body\.meta\uFFFD\uFFFD \(its key\): not valid UTF-8/);
  });

  it('a path or query string whose percent-encoded bytes are not UTF-8 is refused the same way', async () => {
    const before = await everyTableCount();
    const consent = JSON.stringify({ training: true, policyVersion: 'v1' });
    const call = (method: string, url: string, body?: string) =>
      fetch(`${api.baseUrl}${url}`, {
        method,
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body,
      }).then(async (r) => ({
        status: r.status,
        json: (await r.json()) as { error?: { code: string; field?: string } },
      }));

    const query = await call('PUT', `/v1/subjects/s1/consent?app=${model.app}%FF`, consent);
    const name = await call('GET', `/v1/runs?mod%FFel=x`);
    const pathBad = await call('DELETE', `/v1/subjects/s%FF1?app=${model.app}`);

    expect([query.status, query.json.error?.code, query.json.error?.field]).toEqual([400, 'invalid_utf8', 'query.app']);
    expect([name.status, name.json.error?.code]).toEqual([400, 'invalid_utf8']);
    expect([pathBad.status, pathBad.json.error?.code, pathBad.json.error?.field]).toEqual([
      400,
      'invalid_utf8',
      'path',
    ]);
    expect(await everyTableCount()).toEqual(before);
    const fine = await call('PUT', `/v1/subjects/caf%C3%A9/consent?app=${model.app}`, consent);
    expect([fine.status, (fine.json as { subject?: string }).subject]).toEqual([200, 'café']);
  });

  it('a body declared in another charset is refused with 415, not decoded', async () => {
    const before = await everyTableCount();
    const doc = JSON.stringify({ model: model.id, subject: 's', messages: [{ role: 'user', content: 'hi' }] });

    const latin1 = await send(
      'POST',
      '/v1/interactions',
      appKey,
      Buffer.from(doc, 'latin1'),
      'application/json; charset=iso-8859-1',
    );
    const utf16 = await send(
      'POST',
      '/v1/interactions',
      appKey,
      Buffer.from(doc, 'utf16le'),
      'application/json; charset=utf-16le',
    );

    expect([latin1.status, utf16.status]).toEqual([415, 415]);
    expect(utf16.json.error.code).toBe('unsupported_charset');
    expect(await everyTableCount()).toEqual(before);
  });
});
