import { WorkflowFailedError, type Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../../src/activities';
import type { Db } from '../../src/db/pool';
import { insertInteractions, setConsent } from '../../src/db/queries/interactions';
import { PII_ENGINE_VERSION } from '../../src/pii';
import { startPipeline } from '../../src/temporal/pipeline-client';
import type { BlobStore } from '../../src/storage/blob-store';
import { abortSignal, statusQuery, type PipelineResult } from '../../src/workflows/messages';
import { createTestModel, readText, seed, startPipelineEnv, startRunHeldAtExport, uid } from '../helpers/env';

let env: Awaited<ReturnType<typeof startPipelineEnv>>;
let db: Db;
let store: BlobStore;
let client: Client;
let worker: Awaited<ReturnType<typeof startPipelineEnv>>['worker'];
let deps: ActivityDeps;

beforeAll(async () => {
  env = await startPipelineEnv();
  ({ db, store, client, worker, deps } = env);
});

afterAll(() => env?.close());

const run = (model: string) =>
  startPipeline(client, db, { model, taskQueue: worker.taskQueue, trigger: 'test', requestedBy: 'test' });

async function datasetLines(result: PipelineResult) {
  const parse = (t: string) =>
    t
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] });
  return [
    ...parse(await readText(store, result.dataset!.train.key)),
    ...parse(await readText(store, result.dataset!.validation.key)),
  ];
}

describe('TrainingPipeline on the real Temporal dev server', () => {
  it('exports exactly the consented interactions since the watermark, then only what arrived since', async () => {
    // Arrange: consent yes, consent withdrawn (false), and no consent record at all.
    const model = await createTestModel(db);
    await seed(
      db,
      model,
      [
        { subject: 'alice', user: 'q1-a', assistant: 'a1' },
        { subject: 'alice', user: 'q2-a', assistant: 'a2' },
        { subject: 'bob', user: 'q1-b', assistant: 'b1' },
        { subject: 'carol', user: 'q1-c', assistant: 'c1' },
        { subject: 'dave', user: 'q1-d', assistant: 'd1' },
      ],
      { alice: true, bob: false, dave: true, carol: null },
    );

    // Act
    const first = await (await run(model.id)).result();

    // Assert: rows are exactly alice's and dave's, each led by the model's system prompt
    expect(first.status).toBe('succeeded');
    const rows = await datasetLines(first);
    expect(rows.map((r) => r.messages[1]!.content).sort()).toEqual(['q1-a', 'q1-d', 'q2-a']);
    expect(rows.every((r) => r.messages[0]!.role === 'system' && r.messages[0]!.content === model.systemPrompt)).toBe(
      true,
    );
    const collect = first.stages.find((s) => s.name === 'collect')!;
    expect(collect.summary).toMatchObject({ interactions: 5, consented: 3, excludedNoConsent: 2 });

    // The manifest lists each object's real size and checksum; lineage links every row to its interaction.
    const manifest = JSON.parse(await readText(store, first.dataset!.manifestKey));
    for (const split of ['train', 'validation'] as const) {
      const stat = await store.stat(manifest.splits[split].key);
      expect(stat).toMatchObject({ size: manifest.splits[split].bytes, sha256: manifest.splits[split].sha256 });
    }
    expect(manifest.splits.train.count + manifest.splits.validation.count).toBe(3);
    const items = await db
      .selectFrom('dataset_items')
      .selectAll()
      .where('dataset_id', '=', first.dataset!.id)
      .execute();
    expect(items).toHaveLength(3);
    const dbRun = await db.selectFrom('runs').selectAll().where('id', '=', first.runId).executeTakeFirstOrThrow();
    expect(dbRun.status).toBe('succeeded');

    // anonymize ran over every consented row; stages switched off, or without their config, say so.
    const byName = Object.fromEntries(first.stages.map((s) => [s.name, s]));
    expect(byName.train).toMatchObject({ status: 'skipped', reason: 'switched off in the model config' });
    expect(byName.synthesize).toMatchObject({ status: 'skipped', reason: 'no synthesize config: no synthetic rows' });
    expect(byName.score).toMatchObject({ status: 'skipped', reason: 'no score config: rows go to export unscored' });
    expect(byName.anonymize).toMatchObject({ status: 'succeeded', summary: { rows: 3, considered: 3 } });
    expect(byName.export!.status).toBe('succeeded');

    // Act 2: new arrivals, including from a subject who consents only now
    await seed(
      db,
      model,
      [
        { subject: 'alice', user: 'q3-a', assistant: 'a3' },
        { subject: 'erin', user: 'q1-e', assistant: 'e1' },
      ],
      { erin: true },
    );
    const second = await (await run(model.id)).result();

    // Assert 2: only what arrived since the first run
    expect(second.status).toBe('succeeded');
    expect((await datasetLines(second)).map((r) => r.messages[1]!.content).sort()).toEqual(['q1-e', 'q3-a']);
    expect(second.dataset!.id).not.toBe(first.dataset!.id);
  });

  it('redacts personal data before anything reaches the store, with one placeholder per value across turns', async () => {
    // Arrange: a conversation that names the user in two turns and gives an email and a phone number.
    const model = await createTestModel(db, { config: { validationShare: 0 } });
    await db.transaction().execute(async (trx) => {
      await setConsent(trx, { appId: model.app, subject: 'u1', training: true, policyVersion: 'v1' });
      await insertInteractions(trx, [
        {
          appId: model.app,
          model: model.id,
          subject: 'u1',
          source: 'api',
          messages: [
            { role: 'user', content: 'Hi, I am Sarah Connolly, email sarah.connolly@example.org, phone 07700 900123.' },
            { role: 'assistant', content: 'Thanks Sarah Connolly. How many squats did you do, at what heart rate?' },
            { role: 'user', content: '3x12 at 152 bpm. Sarah Connolly again: Romans 8:28 keeps me going.' },
            { role: 'assistant', content: 'Great work, keep the 152 bpm cap.' },
          ],
        },
      ]);
    });

    // Act
    const result = await (await run(model.id)).result();

    // Assert: nothing personal in any stored object; the same person is the same placeholder in every turn.
    expect(result.status).toBe('succeeded');
    const stored: string[] = [];
    for await (const o of store.list(`datasets/${model.id}/`)) stored.push(await readText(store, o.key));
    const everything = stored.join('\n');
    expect(everything).not.toMatch(/Sarah|Connolly|sarah\.connolly@example\.org|07700 900123/);
    const [row] = await datasetLines(result);
    const person = row!.messages[1]!.content.match(/<PERSON_\d+>/)![0];
    expect(row!.messages[2]!.content).toContain(person);
    expect(row!.messages[3]!.content).toContain(person);
    expect(row!.messages[1]!.content).toMatch(/<EMAIL_1>/);
    expect(row!.messages[1]!.content).toMatch(/<PHONE_1>/);
    // Numbers that are not personal survive.
    expect(row!.messages[3]!.content).toContain('3x12 at 152 bpm');
    expect(row!.messages[3]!.content).toContain('Romans 8:28');
    const anonymize = result.stages.find((s) => s.name === 'anonymize')!;
    expect(anonymize.summary).toMatchObject({ rows: 1, entities: { PERSON: 3, EMAIL: 1, PHONE: 1 } });
    const manifest = JSON.parse(await readText(store, result.dataset!.manifestKey));
    expect(manifest.anonymization).toMatchObject({ engineVersion: PII_ENGINE_VERSION, entities: { EMAIL: 1 } });
  });

  it('drops exact duplicates and ends as insufficient_data when nothing new arrived, keeping the watermark', async () => {
    const model = await createTestModel(db, {
      config: {
        validationShare: 0,
        minExamples: 1,
        stages: {},
        thresholds: { maxLossRegression: 0, minWinRateLowerBound: 0.5 },
      },
    });
    await seed(
      db,
      model,
      [
        { subject: 's', user: 'same question', assistant: 'same answer' },
        { subject: 's', user: 'same question', assistant: 'same answer' },
      ],
      { s: true },
    );
    const first = await (await run(model.id)).result();
    expect(first.stages.find((s) => s.name === 'export')!.summary).toMatchObject({
      exported: 1,
      duplicatesDropped: 1,
      train: 1,
      validation: 0,
    });
    const watermark = (
      await db.selectFrom('models').select('watermark_seq').where('id', '=', model.id).executeTakeFirstOrThrow()
    ).watermark_seq;

    const empty = await (await run(model.id)).result();
    expect(empty.status).toBe('insufficient_data');
    const after = (
      await db.selectFrom('models').select('watermark_seq').where('id', '=', model.id).executeTakeFirstOrThrow()
    ).watermark_seq;
    expect(after).toBe(watermark);
  });

  it('answers the status query while running and stops cleanly on the abort signal', async () => {
    const model = await createTestModel(db);
    await seed(db, model, [{ subject: 'x', user: 'hello', assistant: 'hi' }], { x: true });
    // Hold the export stage so the run is observably in flight.
    const { held, started, handle } = await startRunHeldAtExport(client, db, deps, model.id);
    const release = held.release;
    try {
      const status = await handle.query(statusQuery);
      expect(status.stages.find((s) => s.name === 'collect')!.status).toBe('succeeded');

      await handle.signal(abortSignal, { reason: 'operator changed their mind', by: 'test' });
      const result = await started.result();
      release(); // the held activity now sees an abandoned dataset and writes nothing

      expect(result.status).toBe('aborted');
      expect(result.stages.find((s) => s.name === 'export')!.status).toBe('cancelled');
      const ds = await db
        .selectFrom('datasets')
        .selectAll()
        .where('run_id', '=', started.runId)
        .executeTakeFirstOrThrow();
      expect(ds.status).toBe('abandoned');
      expect([...(await listAll(store, ds.prefix))]).toEqual([]);
      const watermark = await db
        .selectFrom('models')
        .select('watermark_seq')
        .where('id', '=', model.id)
        .executeTakeFirstOrThrow();
      expect(watermark.watermark_seq).toBe(0);
    } finally {
      release();
      await held.stop();
    }
  });

  it('cleans up and records the run as cancelled when the workflow is cancelled', async () => {
    const model = await createTestModel(db);
    await seed(db, model, [{ subject: 'y', user: 'hello', assistant: 'hi' }], { y: true });
    const { held, started, handle } = await startRunHeldAtExport(client, db, deps, model.id);
    const release = held.release;
    try {
      await handle.cancel();
      await expect(started.result()).rejects.toBeInstanceOf(WorkflowFailedError);
      release();
      const dbRun = await db.selectFrom('runs').selectAll().where('id', '=', started.runId).executeTakeFirstOrThrow();
      expect(dbRun.status).toBe('cancelled');
      const ds = await db
        .selectFrom('datasets')
        .selectAll()
        .where('run_id', '=', started.runId)
        .executeTakeFirstOrThrow();
      expect(ds.status).toBe('abandoned');
    } finally {
      release();
      await held.stop();
    }
  });

  it('fails fast, without retries, for a model that does not exist', async () => {
    const handle = await client.workflow.start('TrainingPipeline', {
      workflowId: uid('pipeline:missing-'),
      taskQueue: worker.taskQueue,
      args: [{ model: uid('missing-'), trigger: 'test', requestedBy: null, requestId: null }],
    });
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const history = await handle.fetchHistory();
    const attempts = history
      .events!.filter((e) => e.activityTaskStartedEventAttributes)
      .map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 0);
    expect(attempts).toEqual([1]);
  });

  it('starts one pipeline for two concurrent requests for the same model', async () => {
    const model = await createTestModel(db);
    const [a, b] = await Promise.all([run(model.id), run(model.id)]);
    expect(a.runId).toBe(b.runId);
    await a.result();
    const runs = await db.selectFrom('runs').selectAll().where('model_id', '=', model.id).execute();
    expect(runs).toHaveLength(1);
  });
});

async function listAll(store: BlobStore, prefix: string) {
  const keys: string[] = [];
  for await (const b of store.list(prefix)) keys.push(b.key);
  return keys;
}
