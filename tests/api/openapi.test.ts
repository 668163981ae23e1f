import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import { DOCS_CSP } from '../../src/api/docs.router';
import { API_OPERATIONS, openApiDocument, openApiPath } from '../../src/api/openapi';
import { OPENAI_BASE } from '../../src/api/openai.router';
import type { Db } from '../../src/db/pool';
import type { ModelDefinition } from '../../src/domain/model-config';
import { createTestDb, createTestModel, createTestStore, startTestApi, temporalClient, uid } from '../helpers/env';

/**
 * The OpenAPI document against the app it describes, over HTTP on the real servers: every route the app registers is
 * documented and every documented operation is routed; the document is well formed; and what a documented schema
 * refuses, the route refuses too (and the reverse for the safe reads). Only invalid input is sent to routes that
 * write: they validate before they touch anything.
 */

/* eslint-disable @typescript-eslint/no-explicit-any -- the document is JSON, walked generically */
type Json = any;

let db: Db;
let drop: () => Promise<void>;
let closeClient: () => Promise<void>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let model: ModelDefinition;
let adminKey: string;
let doc: Json;

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  const temporal = await temporalClient();
  closeClient = temporal.close;
  api = await startTestApi({ db, temporal: temporal.client, store: await createTestStore(), taskQueue: uid('tq-') });
  model = await createTestModel(db);
  ({ key: adminKey } = await createApiKey(db, { name: 'openapi-test', role: 'admin', appId: null, models: [] }));
  const res = await fetch(`${api.baseUrl}/openapi.json`);
  expect(res.status).toBe(200);
  doc = await res.json();
});

afterAll(async () => {
  await api?.close();
  await closeClient?.();
  await drop?.();
});

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'] as const;

/** Every documented operation as [method, path, operation]. */
const operations = (): [string, string, Json][] =>
  Object.entries(doc.paths as Record<string, Json>).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((m): [string, string, Json] => [m, path, item[m]]),
  );

// ---- the app's routes -------------------------------------------------------------------------------------------

interface Layer {
  route?: { path: unknown; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
  rawPath?: unknown;
}

/** `path` under the mount path `prefix` ('' at the root); a '/' adds nothing. */
const under = (prefix: string, path: string) => (path === '/' ? prefix : `${prefix}${path}`);

/** `METHOD /path` of every route in an express 5 router stack, nested routers included under their mount path. */
function registeredRoutes(stack: Layer[], prefix = ''): string[] {
  return stack.flatMap((layer) => {
    if (layer.route) {
      const { path, methods } = layer.route;
      if (typeof path !== 'string') throw new Error(`a route under ${prefix || '/'} with a non-string path`);
      return Object.keys(methods).map((m) => `${m === '_all' ? 'ALL' : m.toUpperCase()} ${under(prefix, path) || '/'}`);
    }
    if (layer.handle?.stack) {
      // express 5 (router 2.x) keeps the path a router was mounted at as the layer's rawPath.
      if (typeof layer.rawPath !== 'string')
        throw new Error(`a router mounted under ${prefix || '/'} at no string path`);
      return registeredRoutes(layer.handle.stack, under(prefix, layer.rawPath));
    }
    return [];
  });
}

/**
 * The operator pages (/ui) are HTML for browsers behind their own login (a session cookie), not the API apps and
 * scripts call: they are not in the document.
 */
const isOperatorPage = (route: string) => /^[A-Z]+ \/ui(\/|$)/.test(route);

describe('the document and the app', () => {
  it('documents every route the app registers, and routes every documented operation', () => {
    const stack = (api.app as unknown as { router: { stack: Layer[] } }).router.stack;
    const routed = registeredRoutes(stack)
      .filter((r) => !isOperatorPage(r))
      .map((r) => r.replace(/ (.*)$/, (_, path: string) => ` ${openApiPath(path)}`));
    const documented = operations().map(([method, path]) => `${method.toUpperCase()} ${path}`);

    // The walk sees into nested routers at their mount path: the OpenAI surface's routes are found under its base.
    expect(routed).toContain(`POST ${OPENAI_BASE}/chat/completions`);
    expect(new Set(routed).size).toBe(routed.length);
    expect([...routed].sort()).toEqual([...documented].sort());
  });

  it('serves at /openapi.json, without a key, the document openapi.ts builds', async () => {
    const res = await fetch(`${api.baseUrl}/openapi.json`);

    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual(openApiDocument());
  });
});

// ---- structure ---------------------------------------------------------------------------------------------------

const DOC_ID = 'https://tuneloop.invalid/openapi.json';

/** A copy of a schema of the document whose local $refs point into the document's schemas, registered under DOC_ID. */
function absolute(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(absolute);
  if (typeof schema !== 'object' || schema === null) return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([k, v]) => [
      k,
      k === '$ref' && typeof v === 'string' ? v.replace(/^#\/components\/schemas\//, `${DOC_ID}#/$defs/`) : absolute(v),
    ]),
  );
}

/** Ajv (JSON Schema 2020-12, strict) knowing the document's schemas; `coerceTypes` for query strings. */
function ajvFor(opts: { coerceTypes?: boolean } = {}) {
  // Formats are checked by the patterns zod writes beside them (date-time, uuid).
  const ajv = new Ajv2020({ strict: true, allErrors: true, validateFormats: false, logger: false, ...opts });
  ajv.addSchema({ $id: DOC_ID, $defs: absolute(doc.components.schemas) });
  return ajv;
}

function resolvePointer(pointer: string): unknown {
  return pointer
    .slice(2)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<Json>((node, key) => (node === undefined ? undefined : node[key]), doc);
}

function refsIn(node: Json, at = '#'): [string, string][] {
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([k, v]) =>
    k === '$ref' && typeof v === 'string' ? [[at, v] as [string, string]] : refsIn(v, `${at}/${k}`),
  );
}

describe('the document is well-formed OpenAPI 3.1', () => {
  it('is OpenAPI 3.1.0 with an info, paths, and unique operation ids', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    const ids = operations().map(([, , op]) => op.operationId);
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('resolves every $ref', () => {
    const refs = refsIn(doc);
    expect(refs.length).toBeGreaterThan(10);
    const broken = refs.filter(([, ref]) => !ref.startsWith('#/') || resolvePointer(ref) === undefined);
    expect(broken).toEqual([]);
  });

  it('declares every path parameter of every path, and nothing else in the path', () => {
    for (const [method, path, op] of operations()) {
      const templated = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
      const declared = (op.parameters ?? []).filter((p: Json) => p.in === 'path');
      expect(declared.map((p: Json) => p.name).sort(), `${method} ${path}`).toEqual(templated);
      expect(declared.every((p: Json) => p.required === true && p.schema)).toBe(true);
      const keys = (op.parameters ?? []).map((p: Json) => `${p.in}:${p.name}`);
      expect(new Set(keys).size, `${method} ${path}: a parameter twice`).toBe(keys.length);
    }
  });

  it('gives every operation a one-line summary, its roles, a success answer and described responses', () => {
    for (const [method, path, op] of operations()) {
      const where = `${method} ${path}`;
      expect(op.summary, where).toMatch(/^[^\n]{5,120}$/);
      const roles: string[] = op['x-tuneloop-roles'];
      expect(Array.isArray(roles), where).toBe(true);
      if (roles.length) {
        expect(op.security, where).toEqual([{ apiKey: roles }]);
        expect(roles, where).toContain('admin');
        expect(op.description, where).toContain(`Roles: ${roles.join(', ')}.`);
        expect(Object.keys(op.responses), where).toEqual(expect.arrayContaining(['401', '503']));
      } else {
        expect(op.security, where).toEqual([]);
      }
      const statuses = Object.keys(op.responses);
      expect(
        statuses.some((s) => /^[23]\d\d$/.test(s)),
        where,
      ).toBe(true);
      for (const s of statuses) expect(op.responses[s].description, `${where} ${s}`).toBeTruthy();
      // The API's errors are in its one error shape (the OpenAI surface's in OpenAI's); /readyz's 503 is a report.
      for (const s of statuses.filter((s) => roles.length && /^[45]/.test(s))) {
        const wanted = path.startsWith(OPENAI_BASE) ? 'OpenAiError' : 'Error';
        expect(op.responses[s].content['application/json'].schema, `${where} ${s}`).toEqual({
          $ref: `#/components/schemas/${wanted}`,
        });
      }
      if (op.parameters?.length || op.requestBody) expect(statuses, where).toContain('400');
      if (op.requestBody) expect(statuses, where).toEqual(expect.arrayContaining(['413', '415']));
    }
  });

  it('compiles every schema with a strict JSON Schema 2020-12 validator', () => {
    const ajv = ajvFor();
    for (const name of Object.keys(doc.components.schemas)) {
      expect(ajv.getSchema(`${DOC_ID}#/$defs/${name}`), name).toBeTypeOf('function');
    }
    for (const [method, path, op] of operations()) {
      for (const p of op.parameters ?? [])
        expect(() => ajv.compile(p.schema), `${method} ${path} ${p.name}`).not.toThrow();
    }
  });

  it('constrains every property of a request schema (a z.custom without .meta() would say nothing)', () => {
    const unconstrained: string[] = [];
    const walk = (node: Json, at: string) => {
      if (typeof node !== 'object' || node === null) return;
      if (node.properties) {
        for (const [k, v] of Object.entries(node.properties as Record<string, Json>))
          if (Object.keys(v).length === 0) unconstrained.push(`${at}.${k}`);
      }
      for (const [k, v] of Object.entries(node)) walk(v, `${at}.${k}`);
    };
    walk(doc.components.schemas, 'components.schemas');
    for (const [method, path, op] of operations()) walk(op.parameters, `${method} ${path}`);
    expect(unconstrained).toEqual([]);
  });
});

// ---- request schemas against the routes --------------------------------------------------------------------------

const EXTRA = 'unexpected_property';

/** Example path values, with this test's model wherever a model is named (routes check it exists first). */
function pathOf(path: string, op: Json, override: Record<string, string> = {}): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const param = op.parameters.find((p: Json) => p.in === 'path' && p.name === name);
    const value = override[name] ?? (name === 'model' ? model.id : param.example);
    if (typeof value !== 'string') throw new Error(`${path}: no example for ${name}`);
    return encodeURIComponent(value);
  });
}

const queryParams = (op: Json): Json[] => (op.parameters ?? []).filter((p: Json) => p.in === 'query');

/** The query parameters as one closed object (the API refuses parameters it does not know). */
const querySchemaOf = (op: Json) => ({
  type: 'object',
  properties: Object.fromEntries(queryParams(op).map((p) => [p.name, p.schema])),
  required: queryParams(op)
    .filter((p) => p.required)
    .map((p) => p.name),
  additionalProperties: false,
});

/** The documented example query, with this test's model; values as a query string carries them. */
function exampleQuery(op: Json): [string, string][] {
  return queryParams(op)
    .filter((p) => p.example !== undefined)
    .map((p) => [p.name, p.name === 'model' ? model.id : String(p.example)]);
}

/** What ajv sees of a query string: a repeated name is an array, as express's parser makes it. */
function queryObject(pairs: [string, string][]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of pairs) {
    const had = out[k];
    out[k] = had === undefined ? v : [...(Array.isArray(had) ? had : [had]), v];
  }
  return out;
}

const withQuery = (path: string, pairs: [string, string][]) =>
  pairs.length ? `${path}?${new URLSearchParams(pairs).toString()}` : path;

/** A value of another JSON type than `v`. */
const wrongTyped = (v: unknown) => (typeof v === 'string' ? 12345 : 'not-the-right-type');

/** The documented schema of the operation's JSON body, compiled. */
function bodyValidator(ajv: Ajv2020, op: Json): ValidateFunction {
  return ajv.compile(absolute(op.requestBody.content['application/json'].schema));
}

/** The required fields of the body shape `example` is in (the first of oneOf's that accepts it). */
function requiredOf(ajv: Ajv2020, op: Json, example: Json): string[] {
  const schema = op.requestBody.content['application/json'].schema;
  const shapes: Json[] = schema.oneOf ?? [schema];
  const shape = shapes.find((s) => ajv.compile(absolute(s))(example));
  const resolved = shape.$ref ? resolvePointer(shape.$ref) : shape;
  return (resolved as Json).required ?? [];
}

const zodOf = (method: string, path: string) =>
  API_OPERATIONS.find((o) => o.method === method && openApiPath(o.path) === path)!;

/** A refusal as the operation documents it: a 400 in the error shape its document names. */
async function expectRefused(
  res: Awaited<ReturnType<typeof api.call>>,
  op: Json,
  where: string,
  validate: (schema: Json, data: unknown) => boolean,
) {
  expect(res.status, `${where}: ${res.text}`).toBe(400);
  expect(validate(op.responses['400'].content['application/json'].schema, res.json), `${where}: ${res.text}`).toBe(
    true,
  );
}

describe('request schemas refuse what the routes refuse', () => {
  it('refuses, in the document and over HTTP, a body with an unknown property or a wrong-typed field', async () => {
    const ajv = ajvFor();
    const matches = (schema: Json, data: unknown) => ajv.validate(absolute(schema), data) as boolean;
    const checked: string[] = [];
    for (const [method, path, op] of operations().filter(([, , op]) => op.requestBody)) {
      const where = `${method} ${path}`;
      const example = op.requestBody.content['application/json'].example;
      const validate = bodyValidator(ajv, op);
      // The example is valid, for the document and for the router's own zod schema.
      expect(validate(example), `${where}: the example`).toBe(true);
      const zod = zodOf(method, path).body!;
      const zodAccepts =
        'oneOf' in zod ? zod.oneOf.some((s) => s.safeParse(example).success) : zod.schema.safeParse(example).success;
      expect(zodAccepts, `${where}: the example, for zod`).toBe(true);

      const field = requiredOf(ajv, op, example)[0] ?? Object.keys(example)[0]!;
      const invalid = {
        [`an unknown property ${EXTRA}`]: { ...example, [EXTRA]: true },
        [`a wrong-typed ${field}`]: { ...example, [field]: wrongTyped(example[field]) },
      };
      const url = withQuery(pathOf(path, op), exampleQuery(op));
      for (const [what, body] of Object.entries(invalid)) {
        expect(validate(body), `${where}, ${what}: the document accepts it`).toBe(false);
        await expectRefused(
          await api.call(method.toUpperCase(), url, adminKey, body),
          op,
          `${where}, ${what}`,
          matches,
        );
        checked.push(`${where}: ${what}`);
      }
    }
    expect(checked.length).toBeGreaterThanOrEqual(2 * 14);
  });

  it('refuses, in the document and over HTTP, an unknown query parameter and a wrong-typed one', async () => {
    const ajv = ajvFor();
    const strings = ajvFor({ coerceTypes: true });
    const matches = (schema: Json, data: unknown) => ajv.validate(absolute(schema), data) as boolean;
    const checked: string[] = [];
    for (const [method, path, op] of operations().filter(([, , op]) => queryParams(op).length)) {
      const where = `${method} ${path}`;
      const validate = strings.compile(querySchemaOf(op));
      const query = exampleQuery(op);
      expect(validate(queryObject(query)), `${where}: the example query`).toBe(true);
      const body = op.requestBody?.content['application/json'].example;

      const first = queryParams(op).find((p) => p.required) ?? queryParams(op)[0];
      const value = query.find(([k]) => k === first.name)?.[1] ?? 'x';
      const invalid: Record<string, [string, string][]> = {
        [`an unknown parameter ${EXTRA}`]: [...query, [EXTRA, '1']],
        [`${first.name} given twice`]: [
          ...query.filter(([k]) => k !== first.name),
          [first.name, value],
          [first.name, value],
        ],
      };
      for (const p of queryParams(op).filter((p) => p.schema.type === 'integer')) {
        invalid[`a non-integer ${p.name}`] = [...query.filter(([k]) => k !== p.name), [p.name, 'abc']];
      }
      for (const [what, pairs] of Object.entries(invalid)) {
        expect(validate(queryObject(pairs)), `${where}, ${what}: the document accepts it`).toBe(false);
        const res = await api.call(method.toUpperCase(), withQuery(pathOf(path, op), pairs), adminKey, body);
        await expectRefused(res, op, `${where}, ${what}`, matches);
        expect(res.json.error.field, where).toMatch(/^query\./);
        checked.push(`${where}: ${what}`);
      }
    }
    expect(checked.length).toBeGreaterThanOrEqual(2 * 7);
  });

  it('refuses, in the document and over HTTP, a path parameter its schema refuses', async () => {
    const ajv = ajvFor();
    const matches = (schema: Json, data: unknown) => ajv.validate(absolute(schema), data) as boolean;
    for (const [method, path, op] of operations()) {
      for (const param of (op.parameters ?? []).filter((p: Json) => p.in === 'path')) {
        const where = `${method} ${path} {${param.name}}`;
        const bad = ['Not_A_Slug!', 'x'.repeat(250)].find((v) => !ajv.validate(param.schema, v));
        expect(bad, `${where}: no value its schema refuses`).toBeDefined();
        const body = op.requestBody?.content['application/json'].example;
        const res = await api.call(method.toUpperCase(), pathOf(path, op, { [param.name]: bad! }), adminKey, body);
        await expectRefused(res, op, where, matches);
        const field = res.json.error.field ?? res.json.error.param;
        expect(field, where).toBe(path.startsWith(OPENAI_BASE) ? param.name : `params.${param.name}`);
      }
    }
  });

  it('answers every read with its documented example with a documented status, never a 400', async () => {
    const ajv = ajvFor();
    for (const [method, path, op] of operations().filter(([m]) => m === 'get')) {
      const where = `${method} ${path}`;
      const url = withQuery(pathOf(path, op), exampleQuery(op));
      const res = await fetch(`${api.baseUrl}${url}`, {
        headers: { authorization: `Bearer ${adminKey}` },
        redirect: 'manual',
      });
      const text = await res.text();
      expect(res.status, `${where}: ${text.slice(0, 300)}`).not.toBe(400);
      expect(Object.keys(op.responses), `${where} answered ${res.status}`).toContain(String(res.status));
      if (res.status >= 400) {
        const schema = op.responses[String(res.status)].content['application/json'].schema;
        expect(ajv.validate(absolute(schema), JSON.parse(text)), `${where}: ${text}`).toBe(true);
      }
    }
  });
});

// ---- /docs -------------------------------------------------------------------------------------------------------

describe('/docs', () => {
  it('sends /docs to /docs/, relatively', async () => {
    const res = await fetch(`${api.baseUrl}/docs`, { redirect: 'manual' });

    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe('docs/');
  });

  it('renders with files of this origin only, under a Content-Security-Policy of default-src self', async () => {
    const page = await fetch(`${api.baseUrl}/docs/`);
    const html = await page.text();

    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toBe(DOCS_CSP);
    expect(DOCS_CSP).toMatch(/(^|; )default-src 'self'(;|$)/);
    expect(DOCS_CSP).toMatch(/(^|; )script-src 'self'(;|$)/);
    // No inline script: every script element loads a file and holds nothing.
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThanOrEqual(2);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\bsrc="/);
      expect(body!.trim()).toBe('');
    }
    expect(html).not.toMatch(/\son[a-z]+=/i); // no inline event handlers either

    const urls = [...html.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
    expect(urls.length).toBeGreaterThanOrEqual(3);
    for (const url of urls) {
      // Relative: no scheme, no protocol-relative host.
      expect(url).not.toMatch(/^([a-z][a-z0-9+.-]*:|\/\/)/i);
      const asset = new URL(url, page.url);
      expect(asset.origin).toBe(new URL(api.baseUrl).origin);
      const res = await fetch(asset);
      expect(res.status, url).toBe(200);
      expect(res.headers.get('content-security-policy'), url).toBe(DOCS_CSP);
      const body = await res.text();
      if (url.endsWith('.js') || url.endsWith('.css')) expect(body.length, url).toBeGreaterThan(0);
    }
  });

  it('has the init script load the document from this origin, and nothing of the petstore', async () => {
    const init = await (await fetch(`${api.baseUrl}/docs/swagger-init.js`)).text();
    const [, specUrl] = /\burl: '([^']+)'/.exec(init) ?? [];
    const spec = await fetch(new URL(specUrl!, `${api.baseUrl}/docs/`));

    expect(new URL(spec.url).pathname).toBe('/openapi.json');
    expect(spec.status).toBe(200);
    expect(init).not.toMatch(/https?:\/\//);
    expect(init).toMatch(/validatorUrl: null/);
    // swagger-ui-dist's own page and initializer (the petstore) are not served.
    expect((await fetch(`${api.baseUrl}/docs/swagger-initializer.js`)).status).toBe(404);
  });
});
