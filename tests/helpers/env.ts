import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { expect, inject } from 'vitest';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { sql } from 'kysely';
import type { z } from 'zod';
import pg from 'pg';
import { createActivities, type ActivityDeps } from '../../src/activities';
import { createApp, type ApiDeps } from '../../src/api/app';
import { ServingRecorder } from '../../src/api/serving';
import type { ChatMessage } from '../../src/domain/conversation';
import { migrateToLatest } from '../../src/db/migrate';
import { createDb, type Db } from '../../src/db/pool';
import { insertInteractions, setConsent } from '../../src/db/queries/interactions';
import { upsertModel } from '../../src/db/queries/models';
import { modelDefinitionSchema, type ModelDefinition } from '../../src/domain/model-config';
import { createLogger, type Logger } from '../../src/log';
import type { ShadowRunner } from '../../src/api/shadow';
import { startPipeline } from '../../src/temporal/pipeline-client';
import { closeServer } from '../../src/embedded/stack';
import { installTemporalRuntime } from '../../src/temporal/temporal-runtime';
import { loadConfig } from '../../src/config';
import type { GpuActivityDeps } from '../../src/activities/train';
import { createCpuWorker, createGpuWorker } from '../../src/temporal/worker';
import { FileBlobStore } from '../../src/storage';
import type { BlobStore } from '../../src/storage/blob-store';
import { OllamaClient } from '../../src/llm/ollama';
import { importModel, readImportPlan, type ImportPlan } from '../../src/llm/import';
import { describeExit, startTrainer } from '../../src/activities/trainer-process';
import { TINY_BASE_MODEL } from '../../src/embedded/base-models';
import { startOllama } from '../../src/embedded/ollama-server';
import { statusQuery } from '../../src/workflows/messages';
import { freePort } from './ports';

export const testLog = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
/** A client of the test run's real Ollama server. */
export const testOllama = () => new OllamaClient(inject('ollamaUrl'));
installTemporalRuntime(testLog, process.env.TEST_LOG_LEVEL ?? 'error');
export const uid = (prefix = '') => `${prefix}${randomBytes(4).toString('hex')}`;

/** A fresh, migrated database on the shared test server. */
export async function createTestDb(): Promise<{ db: Db; url: string; drop: () => Promise<void> }> {
  const name = `t_${uid()}`;
  const admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = inject('pgAdminUrl').replace(/\/[^/]*$/, `/${name}`);
  const db = createDb(url, testLog, 10);
  await migrateToLatest(db);
  return {
    db,
    url,
    drop: async () => {
      await db.destroy();
      const a = new pg.Client({ connectionString: inject('pgAdminUrl') });
      await a.connect();
      await a.query(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

export async function createTestStore(): Promise<BlobStore> {
  const dir = await mkdtemp(path.join(inject('tmpRoot'), 'store-'));
  return new FileBlobStore(dir);
}

export async function tmpDir(prefix = 'work-'): Promise<string> {
  return mkdtemp(path.join(inject('tmpRoot'), prefix));
}

export async function temporalClient(): Promise<{ client: Client; close: () => Promise<void> }> {
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  return { client: new Client({ connection, namespace: 'default' }), close: () => connection.close() };
}

/** A real worker on its own task queue, running the shared workflow bundle. */
export async function startTestWorker(opts: {
  deps: ActivityDeps;
  taskQueue?: string;
  activities?: Record<string, (...args: never[]) => Promise<unknown>>;
}): Promise<{ worker: Worker; taskQueue: string; stop: () => Promise<void> }> {
  const taskQueue = opts.taskQueue ?? uid('tq-');
  const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  const worker = await createCpuWorker({
    connection,
    namespace: 'default',
    taskQueue,
    deps: opts.deps,
    bundle: { codePath: inject('workflowBundlePath') },
    activities: opts.activities ?? createActivities(opts.deps),
  });
  return running(worker, taskQueue, connection);
}

/** Runs a worker; `stop` shuts it down and closes its connection. */
function running(worker: Worker, taskQueue: string, connection: NativeConnection) {
  const done = worker.run();
  return {
    worker,
    taskQueue,
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
      await connection.close();
    },
  };
}

/**
 * Where a GPU worker in a test finds the trainer and the tiny base model, with a scratch folder of its own. One
 * thread: the tiny model gains nothing from more, and test files run side by side on few cores.
 */
export async function testTrainer(): Promise<GpuActivityDeps['trainer']> {
  return { ...loadConfig({}).trainer, modelsDir: inject('modelsDir'), workDir: await tmpDir('gpu-work-'), threads: 1 };
}

/** A real GPU worker (train, evaluate through the Python trainer) on its own task queue. */
export async function startTestGpuWorker(deps: GpuActivityDeps, taskQueue = uid('gpu-')) {
  const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  const worker = await createGpuWorker({ connection, namespace: 'default', taskQueue, deps });
  return running(worker, taskQueue, connection);
}

/**
 * The workers a run that trains needs: a CPU worker with the real activities and a GPU worker with the real trainer
 * (tiny model), each on its own task queue. `stop` stops the GPU worker first.
 */
export async function startTestWorkers(deps: ActivityDeps, trainerOverrides: Partial<GpuActivityDeps['trainer']> = {}) {
  const cpu = await startTestWorker({ deps });
  const trainer = { ...(await testTrainer()), ...trainerOverrides };
  const gpu = await startTestGpuWorker({ ...deps, trainer });
  return {
    taskQueue: cpu.taskQueue,
    gpuTaskQueue: gpu.taskQueue,
    /** The GPU worker's trainer, with its work folder. */
    trainer,
    async stop() {
      await gpu.stop();
      await cpu.stop();
    },
  };
}

/**
 * A worker whose export stage waits until `release()`: the run is observably in flight at `export`, for tests
 * of status, abort and cancellation.
 */
export async function startHeldExportWorker(deps: ActivityDeps) {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const real = createActivities(deps);
  const worker = await startTestWorker({
    deps,
    activities: {
      ...real,
      exportDataset: async (input: Parameters<typeof real.exportDataset>[0]) => {
        await gate;
        return real.exportDataset(input);
      },
    },
  });
  return { ...worker, release };
}

/** Starts a pipeline run of `model` on a held-export worker and waits until the run is in its export stage. */
export async function startRunHeldAtExport(client: Client, db: Db, deps: ActivityDeps, model: string) {
  const held = await startHeldExportWorker(deps);
  const started = await startPipeline(client, db, {
    model,
    taskQueue: held.taskQueue,
    trigger: 'test',
    requestedBy: 'test',
  });
  const handle = client.workflow.getHandle(started.workflowId, started.runId);
  await expect.poll(async () => (await handle.query(statusQuery)).stage, { timeout: 30_000 }).toBe('export');
  return { held, started, handle };
}

export async function createTestModel(
  db: Db,
  overrides: Partial<z.input<typeof modelDefinitionSchema>> = {},
): Promise<ModelDefinition> {
  // Training and serving are switched off unless a test asks for them: most pipeline tests are about the data
  // plane, and a train stage with no GPU worker on its queue would wait for one.
  const { config, ...rest } = overrides;
  const def = modelDefinitionSchema.parse({
    id: uid('m-'),
    app: uid('app-'),
    baseModel: 'tiny',
    taskFormat: 'chat',
    systemPrompt: 'You are a helpful coach.',
    ...rest,
    config: {
      validationShare: 0.25,
      ...config,
      stages: { train: false, evaluate: false, register: false, canary: false, promote: false, ...config?.stages },
    },
  });
  await upsertModel(db, def);
  return def;
}

export interface SeedRow {
  subject: string;
  user: string;
  assistant: string;
  id?: string;
}

/** Interactions as an app would send them; consent is set per subject (null: no consent record at all). */
export async function seed(
  db: Db,
  model: ModelDefinition,
  rows: SeedRow[],
  consent: Record<string, boolean | null> = {},
): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    for (const [subject, training] of Object.entries(consent)) {
      if (training !== null) await setConsent(trx, { appId: model.app, subject, training, policyVersion: 'v1' });
    }
    const stored = await insertInteractions(
      trx,
      rows.map((r) => ({
        appId: model.app,
        model: model.id,
        subject: r.subject,
        id: r.id,
        messages: [
          { role: 'user', content: r.user },
          { role: 'assistant', content: r.assistant },
        ] as ChatMessage[],
        source: 'api',
      })),
    );
    return stored.map((s) => {
      if (s.id === null) throw new Error(`seed: interaction ${s.externalId} was erased`);
      return s.id;
    });
  });
}

/**
 * Waits until one session of this test database waits on a lock in a statement whose text contains `statement`
 * (ILIKE pattern): how a test knows a concurrent request is blocked behind a transaction it holds open.
 */
export async function waitForLockWait(db: Db, statement: string): Promise<void> {
  await expect
    .poll(
      async () => {
        const r = await sql<{ n: string }>`select count(*) n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock' and query ilike ${statement}`.execute(db);
        return Number(r.rows[0]!.n);
      },
      { timeout: 30_000, interval: 50 },
    )
    .toBe(1);
}

export async function countRows(db: Db, table: 'datasets' | 'dataset_items' | 'interactions' | 'runs' | 'audit_log') {
  const r = await sql<{ n: string }>`select count(*) as n from ${sql.table(table)}`.execute(db);
  return Number(r.rows[0]!.n);
}

export async function readText(store: BlobStore, key: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await store.get(key)) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** The real express app on a free loopback port. */
export async function startTestApi(
  deps: Omit<ApiDeps, 'log' | 'bodyLimit' | 'ollama'> & { bodyLimit?: string; ollama?: OllamaClient; log?: Logger },
) {
  const recorder = deps.recorder ?? new ServingRecorder(deps.db, testLog);
  const app = createApp({ log: testLog, bodyLimit: '64kb', ollama: testOllama(), recorder, ...deps });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    app,
    baseUrl,
    /** A JSON request with a bearer key; the reply's body parsed when it is JSON. */
    async call(method: string, path: string, key: string, body?: unknown) {
      const res = await fetch(`${baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests assert response bodies field by field
      let json: any = null;
      try {
        json = JSON.parse(text);
      } catch {
        // not JSON
      }
      return { status: res.status, headers: res.headers, json, text };
    },
    recorder,
    close: async () => {
      await closeServer(server);
      await (app.locals.shadow as ShadowRunner).close();
      await recorder.close();
    },
  };
}

/**
 * What a workflow test file needs: its own database, a store, a Temporal client and a worker with the real
 * activities. `close` stops them in reverse order.
 */
export async function startPipelineEnv() {
  const { db, drop } = await createTestDb();
  const store = await createTestStore();
  const { client, close: closeClient } = await temporalClient();
  const deps: ActivityDeps = { db, store, log: testLog, ollama: testOllama(), tmpDir: await tmpDir() };
  const worker = await startTestWorker({ deps });
  return {
    db,
    store,
    client,
    deps,
    worker,
    async close() {
      await worker.stop();
      await closeClient();
      await drop();
    },
  };
}

const stagedBases = new Map<string, Promise<ImportPlan>>();

/**
 * Imports a base model of the models folder (the tiny one unless `base` names another) into an Ollama as `tag`;
 * the trainer stages each base once per test file, exactly as the register stage does: a real model for tests of
 * serving that need no training, or to ask a base what it answers before training.
 */
export async function importBase(
  ollama: OllamaClient,
  tag: string,
  opts: { base?: string; parameters?: Record<string, unknown> } = {},
): Promise<void> {
  const base = opts.base ?? TINY_BASE_MODEL;
  let plan = stagedBases.get(base);
  if (!plan) {
    plan = (async () => {
      const out = await tmpDir('stage-');
      const proc = startTrainer({
        trainer: await testTrainer(),
        command: 'ollama-stage',
        args: ['--base', path.join(inject('modelsDir'), base), '--out', path.join(out, 'stage')],
        cwd: out,
        log: testLog,
      });
      const x = await proc.exited;
      if (x.code !== 0) throw new Error(describeExit('ollama-stage', x));
      return readImportPlan(path.join(out, 'stage', 'ollama_import.json'));
    })();
    stagedBases.set(base, plan);
  }
  await importModel(ollama, await plan, tag, { parameters: opts.parameters });
}

/** importBase of the tiny model. */
export const importTinyBase = (ollama: OllamaClient, tag: string, parameters?: Record<string, unknown>) =>
  importBase(ollama, tag, { parameters });

const EXERCISES = ['squats', 'lunges', 'push-ups', 'planks', 'burpees', 'rows', 'dips', 'crunches'];
const DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const SETS_REPS = [
  [3, 10],
  [4, 8],
  [5, 6],
] as const;

/**
 * A coaching log with a pattern the tiny model learns in a few dozen steps; subjects u0..u4. Any 48 consecutive rows
 * are distinct (exercise x day), and each block of 48 prescribes its own sets and reps, so that export's
 * near-duplicate removal keeps every row.
 */
export function coachingRows(n: number, offset = 0): SeedRow[] {
  return Array.from({ length: n }, (_, k) => {
    const i = k + offset;
    const ex = EXERCISES[i % EXERCISES.length]!;
    const day = DAYS[Math.floor(i / EXERCISES.length) % DAYS.length]!;
    const [sets, reps] = SETS_REPS[Math.floor(i / (EXERCISES.length * DAYS.length)) % SETS_REPS.length]!;
    return {
      subject: `u${i % 5}`,
      id: `row-${i}`,
      user: `What should I do for ${ex} on ${day}? (${i})`,
      assistant: `On ${day}, do ${sets} sets of ${reps} ${ex}, rest 60 seconds between sets, and stop if anything hurts.`,
    };
  });
}

/**
 * Activity deps on a fresh database with an Ollama of the caller's own serving a base of the models folder (the tiny
 * model unless `base` names another) as `tag` with one thread: for a file whose stage asks a model many questions (a judge, a teacher). The shared Ollama serves every
 * file's copies of the same weights, and switching between them reloads its runner; and llama.cpp's threads spin
 * when they outnumber the two cores the whole suite runs on.
 */
export async function depsWithOwnOllama(tag: string, base?: string) {
  const { db, drop } = await createTestDb();
  const server = await startOllama({ dir: await tmpDir('ollama-'), port: await freePort(), log: testLog });
  const ollama = new OllamaClient(server.url, { timeoutMs: 60_000 });
  const deps: ActivityDeps = { db, store: await createTestStore(), log: testLog, ollama, tmpDir: await tmpDir() };
  const reimport = () => importBase(ollama, tag, { base, parameters: { num_thread: 1 } });
  await reimport();
  return {
    deps,
    /** The server's URL (its OpenAI-compatible surface is under /v1: an incumbent for tests). */
    url: server.url,
    /** Imports the model again (after a test took it away). */
    reimport,
    async close() {
      await ollama.close();
      await server.stop();
      await drop();
    },
  };
}
