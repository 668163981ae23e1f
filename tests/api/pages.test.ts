import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import { SESSION_COOKIE } from '../../src/api/pages/session';
import { revokeApiKey } from '../../src/db/queries/api-keys';
import type { Db } from '../../src/db/pool';
import { upsertModel } from '../../src/db/queries/models';
import { modelDefinitionSchema, type ModelDefinition } from '../../src/domain/model-config';
import { TINY_BASE_MODEL } from '../../src/embedded/base-models';
import { FileBlobStore } from '../../src/storage';
import { startPipeline } from '../../src/temporal/pipeline-client';
import type { PipelineResult } from '../../src/workflows/messages';
import {
  coachingRows,
  createTestDb,
  createTestModel,
  importTinyBase,
  seed,
  startTestApi,
  startTestWorkers,
  temporalClient,
  testLog,
  testOllama,
  tmpDir,
  uid,
} from '../helpers/env';
import { ALL_STAGES, COACHING_CONSENT, TINY_TRAINING } from '../helpers/stages';

/**
 * The operator pages in a real headless Chromium (Debian's, driven by playwright-core) against the real API, after
 * a real run on the tiny model (train with its curves, evaluate with a judge, register, canary, promote): the login
 * exchange, the index, the run page with its loss chart, the model page, and the Temporal UI finding the run by its
 * search attribute. Screenshots go to test-results/pages/.
 */

const CHROMIUM = process.env.TUNELOOP_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.resolve('test-results/pages');

let db: Db;
let drop: () => Promise<void>;
let temporal: Awaited<ReturnType<typeof temporalClient>>;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let browser: Browser;
let model: ModelDefinition;
let operatorKey: string;
let appKey: string;
let result: PipelineResult;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: run \`bash scripts/setup.sh --browser\``);
  ({ db, drop } = await createTestDb());
  temporal = await temporalClient();
  const store = new FileBlobStore(await tmpDir('store-'));
  const ollama = testOllama();
  workers = await startTestWorkers({ db, store, log: testLog, ollama, tmpDir: await tmpDir() });
  api = await startTestApi({ db, temporal: temporal.client, store, taskQueue: workers.taskQueue });
  const m = await createTestModel(db, { baseModel: TINY_BASE_MODEL, systemPrompt: 'You are a coach.' });
  const judgeTag = `judge-${uid()}:v1`;
  await importTinyBase(ollama, judgeTag);
  model = modelDefinitionSchema.parse({
    ...m,
    config: {
      validationShare: 0.2,
      stages: ALL_STAGES,
      // An evaluation every 4 steps: the validation curve has points before the end.
      training: { ...TINY_TRAINING, evalEverySteps: 4 },
      judge: { model: judgeTag, maxPairs: 3 },
      thresholds: { minWinRateLowerBound: 0 },
      canary: { steps: [50, 100], holdSeconds: 1 },
    },
  });
  await upsertModel(db, model);
  await seed(db, model, coachingRows(40), COACHING_CONSENT);
  ({ key: operatorKey } = await createApiKey(db, { name: 'night-shift', role: 'operator', appId: null, models: [] }));
  ({ key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] }));
  const run = await startPipeline(temporal.client, db, {
    model: model.id,
    taskQueue: workers.taskQueue,
    gpuTaskQueue: workers.gpuTaskQueue,
    trigger: 'test',
    requestedBy: 'pages-test',
  });
  result = await run.result();
  expect(result.status).toBe('succeeded');
  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}, 600_000);

afterAll(async () => {
  await browser?.close();
  await api?.close();
  await workers?.stop();
  await temporal?.close();
  await drop?.();
});

/** A page that records every request it makes and every console error and uncaught exception. */
async function watched(context: BrowserContext) {
  const page = await context.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return { page, requests, errors };
}

async function signIn(page: Page, key: string, next = '/ui') {
  await page.goto(`${api.baseUrl}/ui/login?next=${encodeURIComponent(next)}`);
  await page.fill('input[name=key]', key);
  await Promise.all([page.waitForURL((u) => u.pathname !== '/ui/login'), page.click('button[type=submit]')]);
}

const sessionCount = async () =>
  Number(
    (
      await db
        .selectFrom('operator_sessions')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirst()
    )?.n,
  );

describe('operator pages', () => {
  it('answers the login page, 401, without a session or with a wrong one, and never a page', async () => {
    for (const cookie of [undefined, `${SESSION_COOKIE}=${'x'.repeat(43)}`, `${SESSION_COOKIE}=short`]) {
      for (const url of ['/ui', `/ui/runs/${result.runId}`, `/ui/models/${model.id}`]) {
        const res = await fetch(`${api.baseUrl}${url}`, { headers: cookie ? { cookie } : {} });
        const body = await res.text();
        expect({ url, cookie, status: res.status }).toEqual({ url, cookie, status: 401 });
        expect(body).toContain('name="key"');
        expect(body).not.toContain(result.version!.version);
      }
    }
    // A bearer key is not a session: the pages never take a key from a header (or a URL).
    const bearer = await fetch(`${api.baseUrl}/ui`, { headers: { authorization: `Bearer ${operatorKey}` } });
    expect(bearer.status).toBe(401);
  });

  it('refuses bad logins with a clear message and writes no session', async () => {
    const before = await sessionCount();
    const post = (form: Record<string, string>, headers: Record<string, string> = {}) =>
      fetch(`${api.baseUrl}/ui/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(form),
      });
    const cases: [Record<string, string>, Record<string, string>, number, RegExp][] = [
      [{}, {}, 400, /operator key|Required|expected string/i],
      [{ key: 'tl_000000000000_notarealsecret' }, {}, 401, /not valid/],
      [{ key: appKey }, {}, 403, /app key/],
      [{ key: operatorKey, extra: '1' }, {}, 400, /extra|unrecognized/i],
      [{ key: operatorKey }, { origin: 'https://evil.example' }, 403, /own login page/],
      [{ key: operatorKey }, { 'sec-fetch-site': 'cross-site' }, 403, /own login page/],
    ];
    for (const [form, headers, status, message] of cases) {
      const res = await post(form, headers);
      const body = await res.text();
      expect({ form, status: res.status }).toEqual({ form, status });
      expect(body).toMatch(message);
      expect(res.headers.get('set-cookie')).toBeNull();
    }
    // A form too big for the login: the API's status and words, as a page.
    const big = await post({ key: operatorKey, next: `/ui?${'x'.repeat(20_000)}` });
    expect([big.status, big.headers.get('content-type')]).toEqual([413, 'text/html; charset=utf-8']);
    expect(await big.text()).toMatch(/exceeds the limit of 8192 bytes/);
    expect(await sessionCount()).toBe(before);
    // `next` only ever leads to a page of ours.
    const res = await post({ key: operatorKey, next: '//evil.example/ui' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/ui');
    // Behind a TLS proxy the browser is on https while the API hears http: its own origin is still its own.
    const host = new URL(api.baseUrl).host;
    const proxiedHeaders: Record<string, string>[] = [
      { origin: `https://${host}`, 'sec-fetch-site': 'same-origin' },
      { origin: `https://${host}` },
    ];
    for (const headers of proxiedHeaders) {
      const proxied = await post({ key: operatorKey }, headers);
      expect({ headers, status: proxied.status }).toEqual({ headers, status: 303 });
    }
  });

  it('signs an operator in with a HttpOnly, SameSite=Strict cookie and shows the index', async () => {
    const context = await browser.newContext();
    const { page, requests, errors } = await watched(context);
    await signIn(page, operatorKey);

    expect(new URL(page.url()).pathname).toBe('/ui');
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: SESSION_COOKIE, httpOnly: true, sameSite: 'Strict', path: '/ui' });
    expect(cookie!.value).not.toContain(operatorKey.slice(0, 20));
    const row = page.locator('table.models tbody tr', { hasText: model.id });
    await expect.poll(() => row.count()).toBe(1);
    expect(await row.textContent()).toContain(result.version!.version);
    expect(await row.locator(`a[href="/ui/runs/${result.runId}"]`).count()).toBe(1);
    await page.screenshot({ path: path.join(SHOTS, 'index.png'), fullPage: true });
    expect(errors).toEqual([]);
    expect(requests.filter((u) => new URL(u).origin !== api.baseUrl)).toEqual([]);
    await context.close();
  });

  it('shows a finished run: stages, a loss chart with one point per logged step, the evaluation, samples, canary', async () => {
    const context = await browser.newContext();
    const { page, requests, errors } = await watched(context);
    await signIn(page, operatorKey, `/ui/runs/${result.runId}`);
    expect(new URL(page.url()).pathname).toBe(`/ui/runs/${result.runId}`);

    // Every stage in the timeline, with its status.
    for (const s of result.stages) {
      expect(await page.locator(`tr.stage[data-stage="${s.name}"] .badge`).textContent()).toBe(
        s.status.replace(/_/g, ' '),
      );
    }
    // A bar on the time axis for every stage that ran.
    expect(await page.locator('table.timeline svg.bar rect').count()).toBe(
      result.stages.filter((s) => s.startedAt).length,
    );
    // The loss chart: one point per step the trainer logged (every step here), the held-out loss every 4 steps.
    const log = await api.call('GET', `/v1/runs/${result.runId}/training-log`, operatorKey);
    expect(log.status).toBe(200);
    const train = result.stages.find((s) => s.name === 'train')!.summary as { steps: number };
    expect(log.json.train.map((p: { step: number }) => p.step)).toEqual(
      Array.from({ length: train.steps }, (_, i) => i + 1),
    );
    // Every 4 steps, and at the end.
    const evals = [...Array.from({ length: Math.ceil(train.steps / 4) - 1 }, (_, i) => 4 * (i + 1)), train.steps];
    expect(log.json.validation.map((p: { step: number }) => p.step)).toEqual(evals);
    await page.waitForFunction(() => 'tuneloopCharts' in globalThis);
    const drawn = await page.evaluate(() => {
      const u = (globalThis as unknown as { tuneloopCharts: Record<string, { data: (number | null)[][] }> })
        .tuneloopCharts['loss-chart']!;
      return { steps: u.data[0], train: u.data[1], validation: u.data[2] };
    });
    expect(drawn.steps).toEqual(log.json.train.map((p: { step: number }) => p.step));
    expect(drawn.train).toEqual(log.json.train.map((p: { loss: number }) => p.loss));
    expect((drawn.validation ?? []).filter((v) => v !== null)).toHaveLength(log.json.validation.length);
    expect(await page.locator('#loss-chart canvas').count()).toBe(1);

    // The evaluation table against the base, the judge's interval, the gate, sample answers side by side.
    const evaluation = page.locator('#evaluation');
    expect(await evaluation.locator('h2').textContent()).toContain('candidate vs base');
    expect(await evaluation.locator('table.eval').textContent()).toContain('Held-out loss');
    expect(await evaluation.locator('.judge').textContent()).toMatch(/95 % CI \d+\.\d % – \d+\.\d %/);
    expect(await evaluation.locator('ul.gate li').count()).toBeGreaterThan(0);
    expect(await evaluation.locator('table.samples tbody tr').count()).toBeGreaterThan(0);
    expect(await page.locator('#canary h2').textContent()).toContain('passed');

    await page.screenshot({ path: path.join(SHOTS, 'run.png'), fullPage: true });
    expect(errors).toEqual([]);
    expect(requests.filter((u) => new URL(u).origin !== api.baseUrl)).toEqual([]);
    await context.close();
  });

  it('shows the model: its versions and statuses, the alias history and the migration', async () => {
    const context = await browser.newContext();
    const { page, requests, errors } = await watched(context);
    await signIn(page, operatorKey, `/ui/models/${model.id}`);

    const version = page.locator('#versions tbody tr', { hasText: result.version!.version });
    expect(await version.locator('.badge').first().textContent()).toBe('production');
    expect(await page.locator('#history tbody tr').count()).toBeGreaterThan(0);
    expect(await page.locator('#migration h2').textContent()).toContain('Migration');
    await page.screenshot({ path: path.join(SHOTS, 'model.png'), fullPage: true });
    expect(errors).toEqual([]);
    expect(requests.filter((u) => new URL(u).origin !== api.baseUrl)).toEqual([]);

    // An unknown model or run is a page that says so, not an error.
    const missing = await page.goto(`${api.baseUrl}/ui/models/no-such-model`);
    expect(missing!.status()).toBe(404);
    await context.close();
  });

  it('ends the session on sign-out and when the key is revoked', async () => {
    const context = await browser.newContext();
    const { page } = await watched(context);
    await signIn(page, operatorKey);
    await Promise.all([page.waitForURL(/\/ui\/login/), page.click('form.logout button')]);
    expect((await page.goto(`${api.baseUrl}/ui`))!.status()).toBe(401);

    const { key, id } = await createApiKey(db, { name: 'leaver', role: 'operator', appId: null, models: [] });
    await signIn(page, key);
    expect((await page.goto(`${api.baseUrl}/ui`))!.status()).toBe(200);
    await revokeApiKey(db, id);
    expect((await page.goto(`${api.baseUrl}/ui`))!.status()).toBe(401);
    await context.close();
  });

  it('lets an operator find the run in the Temporal UI by the TuneloopModel search attribute', async () => {
    const ui = inject('temporalUiUrl');
    const context = await browser.newContext();
    const page = await context.newPage();
    const query = encodeURIComponent(`TuneloopModel="${model.id}"`);
    await page.goto(`${ui}/namespaces/default/workflows?query=${query}`);
    await page.getByText(`pipeline:${model.id}`).first().waitFor({ timeout: 60_000 });
    await page.screenshot({ path: path.join(SHOTS, 'temporal-ui.png'), fullPage: true });
    // The filter filters: another model's runs are not listed.
    const other = encodeURIComponent(`TuneloopModel="no-such-${uid()}"`);
    await page.goto(`${ui}/namespaces/default/workflows?query=${other}`);
    await page.waitForLoadState('networkidle');
    expect(await page.getByText(`pipeline:${model.id}`).count()).toBe(0);
    await context.close();
  });
});
