import { Writable } from 'node:stream';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import { upsertModel } from '../../src/db/queries/models';
import { TINY_BASE_MODEL } from '../../src/embedded/base-models';
import { startOllama, type RunningOllama } from '../../src/embedded/ollama-server';
import { modelDefinitionSchema, type ModelDefinition } from '../../src/domain/model-config';
import { OllamaClient } from '../../src/llm/ollama';
import { createLogger } from '../../src/log';
import { FileBlobStore } from '../../src/storage';
import { startPipeline } from '../../src/temporal/pipeline-client';
import { abortSignal, statusQuery, type PipelineResult, type PipelineStatus } from '../../src/workflows/messages';
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
import { holds } from '../helpers/holds';
import { freePort } from '../helpers/ports';
import { ALL_STAGES, COACHING_CONSENT, TINY_TRAINING } from '../helpers/stages';

/**
 * Moving an app off its hosted model, end to end on real parts: the incumbent is a real server speaking the hosted
 * providers' protocol (the shared test Ollama through its OpenAI-compatible /v1, under a key the config only names),
 * production until our first version wins. The loop trains on the incumbent's recorded answers, shadows the
 * candidate (pairs judged both orders), canaries it against the incumbent and promotes it, while clients chat through
 * the OpenAI surface without one failed call. Then a second candidate's canary loses our own Ollama (killed): every
 * call is still answered, by the incumbent, the candidate is rolled back, and the incumbent's key is nowhere: not in
 * the logs, the database or a workflow history.
 */

const SECRET = `sk-tuneloop-e2e-canary-${uid()}`;
const KEY_ENV = 'TUNELOOP_E2E_INCUMBENT_KEY';

let db: Db;
let drop: () => Promise<void>;
let temporal: Awaited<ReturnType<typeof temporalClient>>;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let local: RunningOllama; // ours: registered versions, the judge; killed in the last test
let canaryServer: RunningOllama; // ours too, as `tuneloop up` runs it: the canary's and the shadow's runners
let model: ModelDefinition;
let appKey: string;
let seeded = 0;
const logs: string[] = [];

beforeAll(async () => {
  process.env[KEY_ENV] = SECRET;
  ({ db, drop } = await createTestDb());
  temporal = await temporalClient();
  const oursDir = await tmpDir('ours-');
  local = await startOllama({ dir: oursDir, port: await freePort(), log: testLog });
  canaryServer = await startOllama({ dir: oursDir, port: await freePort(), log: testLog, readsModelsOf: true });
  const ours = new OllamaClient(local.url);
  const canaryOllama = new OllamaClient(canaryServer.url);
  const store = new FileBlobStore(await tmpDir('store-'));
  const capture = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const log = createLogger('debug', capture);
  workers = await startTestWorkers({ db, store, log, ollama: ours, canaryOllama, tmpDir: await tmpDir() });
  api = await startTestApi({
    db,
    temporal: temporal.client,
    store,
    taskQueue: workers.taskQueue,
    ollama: ours,
    canaryOllama,
    log,
  });
  // The incumbent: the shared test Ollama, through its OpenAI-compatible endpoint.
  const hostedTag = `hosted-${uid()}`;
  await importTinyBase(testOllama(), `${hostedTag}:latest`);
  const judgeTag = `judge-${uid()}:v1`;
  await importTinyBase(ours, judgeTag);
  const m = await createTestModel(db, { baseModel: TINY_BASE_MODEL, systemPrompt: 'You are a coach.' });
  model = modelDefinitionSchema.parse({
    ...m,
    config: {
      validationShare: 0.2,
      stages: ALL_STAGES, // shadow is on by default: the model has an incumbent
      training: TINY_TRAINING,
      judge: { model: judgeTag, maxPairs: 4 },
      thresholds: { minWinRateLowerBound: 0 }, // the tiny judge's verdicts are noise: the plumbing is judged
      incumbent: { baseUrl: `${inject('ollamaUrl')}/v1`, model: hostedTag, apiKeyEnv: KEY_ENV, timeoutMs: 60_000 },
      shadow: {
        share: 1,
        holdSeconds: 2,
        minPairs: 4,
        maxJudged: 4,
        maxExtensions: 60,
        minWinOrTie: 0,
        maxLatencyRatio: 100,
      },
      canary: {
        steps: [50, 100],
        holdSeconds: 3,
        minCalls: 2,
        maxExtensions: 60,
        margins: { errorRate: 0.02, p95LatencyRatio: 100, thumbsDownRate: 1, schemaValidity: 1 },
      },
    },
  });
  await upsertModel(db, model);
  ({ key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] }));
}, 180_000);

afterAll(async () => {
  await api?.close();
  await workers?.stop();
  await canaryServer?.stop();
  await local?.stop();
  await temporal?.close();
  await drop?.();
  delete process.env[KEY_ENV];
});

/** Clients chatting through the OpenAI surface until stopped: every status and who answered. */
function traffic(n: number) {
  const seen: { status: number; by: string | null; body: string }[] = [];
  let stop = false;
  const clients = Array.from({ length: n }, async (_, c) => {
    for (let i = 0; !stop; i++) {
      const r = await api.call('POST', '/openai/v1/chat/completions', appKey, {
        model: model.id,
        messages: [{ role: 'user', content: 'What should I do for squats on Monday?' }],
        max_tokens: 6,
        user: `u${(c + i) % 5}`,
      });
      seen.push({ status: r.status, by: r.json?.system_fingerprint ?? null, body: r.text });
      await new Promise((resolve) => setTimeout(resolve, 100)); // users pause: two cores run everything here
    }
  });
  return {
    seen,
    stop: async () => {
      stop = true;
      await Promise.all(clients);
    },
  };
}

async function run() {
  await seed(db, model, coachingRows(48, seeded), COACHING_CONSENT);
  seeded += 48;
  return startPipeline(temporal.client, db, {
    model: model.id,
    taskQueue: workers.taskQueue,
    gpuTaskQueue: workers.gpuTaskQueue,
    trigger: 'test',
    requestedBy: 'test',
  });
}

const status = (workflowId: string): Promise<PipelineStatus> =>
  temporal.client.workflow.getHandle(workflowId).query(statusQuery);

const stageOf = (r: PipelineResult, name: string) => r.stages.find((s) => s.name === name)!;

describe('moving off the hosted model', () => {
  it('serves the incumbent first, then shadows, canaries against it and promotes our first version', async () => {
    // Arrange: the app's users chat before anything is trained: the incumbent answers, and it is recorded
    const load = traffic(2);
    await expect.poll(() => load.seen.length, { timeout: 60_000 }).toBeGreaterThan(5);
    expect(new Set(load.seen.map((s) => s.by))).toEqual(new Set(['incumbent']));

    // Act
    const handle = await run();
    const result = (await handle.result()) as PipelineResult;
    await load.stop();

    // Assert
    expect(result.status).toBe('succeeded');
    for (const name of ['train', 'evaluate', 'register', 'shadow', 'canary', 'promote']) {
      expect({ name, status: stageOf(result, name).status }).toEqual({ name, status: 'succeeded' });
    }
    const shadow = stageOf(result, 'shadow').summary as {
      outcome: string;
      verdict: { pairs: number; winOrTie: { judged: number } };
    };
    expect(shadow.outcome).toBe('passed');
    expect(shadow.verdict.winOrTie.judged).toBeGreaterThanOrEqual(4); // minPairs, judged both orders
    expect(shadow.verdict.pairs).toBeGreaterThanOrEqual(shadow.verdict.winOrTie.judged);
    expect(stageOf(result, 'canary').summary).toMatchObject({ outcome: 'passed', steps: [50], reasons: [] });
    // Every call answered; the incumbent, then (for the canary's subjects, then everyone) our version.
    expect(load.seen.filter((s) => s.status !== 200)).toEqual([]);
    expect(load.seen.map((s) => s.by)).toContain(result.version!.version);
    const migration = await api.call('GET', `/v1/models/${model.id}/migration`, appKey);
    expect(migration.json.serving.production).toBe(result.version!.version);
    expect(migration.json.totals.answeredByIncumbent).toBeGreaterThan(0);
    expect(migration.json.totals.answeredLocally).toBeGreaterThan(0);
  }, 600_000);

  it('answers every call through the incumbent when our Ollama servers die during a canary', async () => {
    // Arrange: a second candidate, shadowed against our first version, then in its canary at 50 %, held long
    // enough that the abort lands in the hold: a step that passed would start a promotion, which finishes whatever
    // happens (against dead servers it retries for up to half an hour)
    model = modelDefinitionSchema.parse({
      ...model,
      config: { ...model.config, canary: { ...model.config.canary, holdSeconds: 300 } },
    });
    await upsertModel(db, model);
    const load = traffic(2);
    const handle = await run();
    // The way there (train, evaluate, register, shadow) is slow when other Ollama tests run beside it, so the wait
    // is long; a run that ends fails at once, and either way the failure says where the run was.
    let where = '';
    await expect
      .poll(
        async () => {
          const s = await status(handle.workflowId);
          where = `${s.status} ${s.stage ?? '-'} ${s.canary?.percent ?? '-'}`;
          return where;
        },
        { timeout: 840_000, interval: 500 },
      )
      .toMatch(/^running canary 50$|^(?!running )/);
    expect(where).toBe('running canary 50');

    // Act: both of our Ollama servers die; the app's users keep chatting
    await Promise.all([local.kill(), canaryServer.kill()]);
    const killedAt = load.seen.length;
    await expect.poll(() => load.seen.length - killedAt, { timeout: 120_000 }).toBeGreaterThan(30);
    await load.stop();
    await temporal.client.workflow
      .getHandle(handle.workflowId)
      .signal(abortSignal, { reason: 'our model servers are down', by: 'test' });
    const result = (await handle.result()) as PipelineResult;

    // Assert: not one call failed; once the breaker opened, the incumbent answered them all; the canary is out
    expect(load.seen.filter((s) => s.status !== 200)).toEqual([]);
    expect(load.seen.slice(-10).map((s) => s.by)).toEqual(Array(10).fill('incumbent'));
    expect(result.status).toBe('aborted');
    const aliases = await db.selectFrom('aliases').select('name').where('model_id', '=', model.id).execute();
    expect(aliases.map((a) => a.name)).toEqual(['production']);
    const fallbacks = await db
      .selectFrom('serving_calls')
      .select(db.fn.countAll<string>().as('n'))
      .where('model_id', '=', model.id)
      .where('fell_back', '=', true)
      .executeTakeFirstOrThrow();
    expect(Number(fallbacks.n)).toBeGreaterThan(0);
  }, 1_200_000);

  it("never lets the incumbent's key into the logs, the database or a workflow history", async () => {
    expect(logs.join('')).not.toContain(SECRET);
    const tables = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`.execute(
      db,
    );
    for (const { table_name } of tables.rows) {
      const found = await sql<{ n: number }>`
        select count(*)::int as n from ${sql.table(table_name)} t where t::text like ${'%' + SECRET + '%'}`.execute(db);
      expect(found.rows[0]!.n, table_name).toBe(0);
    }
    const runs = await db.selectFrom('runs').select('workflow_id').where('model_id', '=', model.id).execute();
    expect(runs.length).toBe(2);
    for (const r of runs) {
      const history = await temporal.client.workflow.getHandle(r.workflow_id).fetchHistory();
      expect(history.events!.length).toBeGreaterThan(10);
      expect(holds(history, Buffer.from(SECRET))).toBe(false);
    }
  });
});
