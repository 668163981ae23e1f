import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import { insertFeedback } from '../../src/db/queries/feedback';
import { upsertModel } from '../../src/db/queries/models';
import { modelDefinitionSchema, type ModelDefinition } from '../../src/domain/model-config';
import { startPipeline } from '../../src/temporal/pipeline-client';
import { TINY_BASE_MODEL } from '../../src/embedded/base-models';
import { FileBlobStore } from '../../src/storage';
import type { PipelineResult } from '../../src/workflows/messages';
import {
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
import { ALL_STAGES } from '../helpers/stages';

/**
 * Erasure as an auditor checks it. Every subject's conversations carry a marker of their own; the whole loop runs
 * (collect → … → evaluate with a judge → register with parity → canary → promote), the erased subject also chats
 * with the promoted version and gives feedback; then the subject is erased and every byte tuneloop controls is
 * searched: every object of the blob store, every file of the GPU host's work folder, the workers' scratch folder
 * and Ollama's models, every row of every PostgreSQL table, and the workflow histories of everything that ran on
 * the test's task queue. The storage is enumerated, not listed by hand: a stage added later that writes a copy
 * erasure does not reach fails this test. The other subjects' markers are still found, so the search works.
 */

const SUBJECTS = ['alpha', 'bravo', 'charlie', 'delta'] as const;
/** Lowercase letters only: nothing the redactor would take for personal data, and unique to this test. */
const marker = (s: string) => `qz${s}mkr`;
const subjectId = (s: string) => `subject-${s}-qzid`;

let db: Db;
let drop: () => Promise<void>;
let temporal: Awaited<ReturnType<typeof temporalClient>>;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let store: FileBlobStore;
let scratch: string;
let model: ModelDefinition;
let appKey: string;
let adminKey: string;
const ollama = testOllama();

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  temporal = await temporalClient();
  store = new FileBlobStore(await tmpDir('store-'));
  scratch = await tmpDir();
  workers = await startTestWorkers({ db, store, log: testLog, ollama, tmpDir: scratch });
  api = await startTestApi({ db, temporal: temporal.client, store, taskQueue: workers.taskQueue });
  const judge = `judge-${uid()}:v1`;
  await importTinyBase(ollama, judge);
  const base = await createTestModel(db, { baseModel: TINY_BASE_MODEL, systemPrompt: 'You are a coach.' });
  model = modelDefinitionSchema.parse({
    ...base,
    config: {
      validationShare: 0.5,
      stages: ALL_STAGES,
      training: { maxSteps: 8, epochs: 2, effectiveBatchSize: 4, microBatchSize: 2, maxLength: 256 },
      judge: { model: judge, maxPairs: 6 },
      // The score stage's judge too (its reasons are tied to the rows they judge); it never filters here. Short,
      // one call at a time: the judge is the shared test Ollama, which other files' calls wait on.
      score: {
        judge: { provider: 'ollama', model: judge },
        maxTokens: 8,
        concurrency: 1,
        calibration: { minRows: 1000, whenUncalibrated: 'keep' },
      },
      thresholds: { minWinRateLowerBound: 0, maxLossRegression: 100 },
      canary: { steps: [100], holdSeconds: 1 },
    },
  });
  await upsertModel(db, model);
  ({ key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] }));
  ({ key: adminKey } = await createApiKey(db, { name: 'root', role: 'admin', appId: null, models: [] }));
});

afterAll(async () => {
  await api?.close();
  await workers?.stop();
  await temporal?.close();
  await drop?.();
});

/** Where `needle` occurs in everything tuneloop controls: a list of places, empty when nowhere. */
async function findEverywhere(needle: string): Promise<string[]> {
  const bytes = Buffer.from(needle, 'utf8');
  const found: string[] = [];
  for await (const o of store.list('')) {
    const chunks: Buffer[] = [];
    for await (const c of await store.get(o.key)) chunks.push(Buffer.from(c as Buffer));
    if (Buffer.concat(chunks).includes(bytes)) found.push(`store:${o.key}`);
  }
  for (const [name, dir] of [
    ['gpu-work', workers.trainer.workDir],
    ['scratch', scratch],
    ['ollama', path.join(inject('tmpRoot'), 'ollama')],
  ] as const) {
    for (const file of await filesUnder(dir)) {
      if ((await readFile(file)).includes(bytes)) found.push(`${name}:${path.relative(dir, file)}`);
    }
  }
  const tables = await sql<{ name: string }>`
    select table_name as name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`.execute(db);
  expect(tables.rows.length).toBeGreaterThan(10);
  for (const { name } of tables.rows) {
    const r = await sql<{ n: string }>`
      select count(*) as n from ${sql.table(name)} t where strpos(t::text, ${needle}) > 0`.execute(db);
    if (Number(r.rows[0]!.n) > 0) found.push(`postgres:${name}`);
  }
  const workflows = temporal.client.workflow.list({ query: `TaskQueue = "${workers.taskQueue}"` });
  let histories = 0;
  for await (const wf of workflows) {
    const history = await temporal.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    histories++;
    if (holds(history, bytes)) found.push(`temporal:${wf.workflowId}/${wf.runId}`);
  }
  expect(histories).toBeGreaterThan(0);
  return found;
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const p = path.join(dir, name);
    const s = await stat(p).catch(() => null);
    if (s?.isDirectory()) out.push(...(await filesUnder(p)));
    else if (s?.isFile()) out.push(p);
  }
  return out;
}

describe('erasure, searched for the way an auditor would', () => {
  it('leaves no copy of the erased subject anywhere, while the other subjects are still found', async () => {
    // Arrange: ten conversations a subject, each carrying the subject's marker in the question and the answer.
    const rows = SUBJECTS.flatMap((s, k) =>
      Array.from({ length: 10 }, (_, i) => ({
        subject: subjectId(s),
        id: `${s}-${i}`,
        user: `What should I do for squats on day ${i + k}? My code is ${marker(s)}.`,
        assistant: `For ${marker(s)}: 3 sets of 10 squats on day ${i + k}, resting 60 seconds.`,
      })),
    );
    const ids = await seed(db, model, rows, Object.fromEntries(SUBJECTS.map((s) => [subjectId(s), true])));
    // People rated a row of alpha's and one of bravo's: the quality report's best rows, shown in the run's view
    await db.transaction().execute(async (trx) => {
      for (const i of [0, 10]) {
        await insertFeedback(trx, {
          interactionId: ids[i]!,
          externalId: null,
          thumbs: null,
          rating: 5,
          correction: null,
          comment: null,
        });
      }
    });
    const run = await startPipeline(temporal.client, db, {
      model: model.id,
      taskQueue: workers.taskQueue,
      gpuTaskQueue: workers.gpuTaskQueue,
      trigger: 'test',
      requestedBy: 'test',
    });
    const result = (await run.result()) as PipelineResult;
    expect(result.status).toBe('succeeded');
    for (const s of ['alpha', 'bravo']) {
      const chat = await api.call('POST', '/v1/chat', appKey, {
        model: model.id,
        subject: subjectId(s),
        messages: [{ role: 'user', content: `Plan for ${marker(s)} please.` }],
        options: { num_predict: 4 },
      });
      expect(chat.status).toBe(200);
      await api.recorder.flush(); // the conversation is stored off the response path
      const feedback = await api.call('POST', `/v1/interactions/${chat.json.id}/feedback`, appKey, {
        thumbs: 'down',
        comment: `Not for ${marker(s)}.`,
        correction: `Rest more, ${marker(s)}.`,
      });
      expect(feedback.status).toBe(201);
    }
    // Before: the erased subject is in the dataset, the evaluation pairs and verdicts, and PostgreSQL.
    const before = await findEverywhere(marker('alpha'));
    expect(before).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^store:datasets\/.*\/train\.jsonl$/),
        expect.stringMatching(/^store:datasets\/.*\/validation\.jsonl$/),
        expect.stringMatching(/^store:runs\/.*\/eval\/pairs\.jsonl$/),
        'postgres:interactions',
        'postgres:feedback',
      ]),
    );

    // Act
    const erased = await api.call(
      'DELETE',
      `/v1/subjects/${subjectId('alpha')}?app=${encodeURIComponent(model.app)}`,
      adminKey,
    );

    // Assert
    expect(erased.status).toBe(200);
    const objects = (erased.json.erasure.datasets as { objects: { key: string }[] }[]).flatMap((d) =>
      d.objects.map((o) => o.key),
    );
    expect(objects).toEqual(expect.arrayContaining([expect.stringMatching(/\/eval\/pairs\.jsonl$/)]));
    expect(await findEverywhere(marker('alpha'))).toEqual([]);
    expect(await findEverywhere(subjectId('alpha'))).toEqual([]);
    // Nor does the run's view show it: its quality report's examples are the others' rows
    const view = await api.call('GET', `/v1/runs/${run.runId}`, adminKey);
    expect(view.status).toBe(200);
    expect(JSON.stringify(view.json)).not.toContain(marker('alpha'));
    expect(JSON.stringify(view.json)).toContain(marker('bravo'));
    const kept = await findEverywhere(marker('bravo'));
    expect(kept).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^store:datasets\/.*\/train\.jsonl$/),
        'postgres:interactions',
        'postgres:feedback',
      ]),
    );
  }, 600_000);
});
