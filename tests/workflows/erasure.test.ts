import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../../src/activities';
import type { DatasetManifest } from '../../src/activities/export';
import { putDerivedLines } from '../../src/activities/derived';
import { createApiKey } from '../../src/api/auth';
import { importInteractions } from '../../src/cli/import';
import { sha256Hex } from '../../src/dataset/rows';
import { eraseSubjectRecords } from '../../src/db/queries/erasure';
import type { Db } from '../../src/db/pool';
import type { ModelDefinition } from '../../src/domain/model-config';
import { resumePendingErasures, startErasure } from '../../src/temporal/erasure-client';
import { startPipeline } from '../../src/temporal/pipeline-client';
import type { BlobStore } from '../../src/storage/blob-store';
import {
  createTestModel,
  readText,
  seed,
  startPipelineEnv,
  startRunHeldAtExport,
  startTestApi,
  testLog,
  waitForLockWait,
} from '../helpers/env';

/**
 * Erasure against the real database, store, Temporal server and API: the subject's raw data goes, every stored
 * dataset that held their rows is rewritten with new checksums, versions trained on them are flagged, and an
 * erasure while a pipeline is running never lets their rows into that run's dataset.
 */

let env: Awaited<ReturnType<typeof startPipelineEnv>>;
let db: Db;
let store: BlobStore;
let client: Client;
let worker: Awaited<ReturnType<typeof startPipelineEnv>>['worker'];
let deps: ActivityDeps;
let api: Awaited<ReturnType<typeof startTestApi>>;
let adminKey: string;

beforeAll(async () => {
  env = await startPipelineEnv();
  ({ db, store, client, worker, deps } = env);
  api = await startTestApi({ db, temporal: client, store, taskQueue: worker.taskQueue });
  ({ key: adminKey } = await createApiKey(db, { name: 'root', role: 'admin', appId: null, models: [] }));
});

afterAll(async () => {
  await api?.close();
  await env?.close();
});

const lines = async (key: string) => (await readText(store, key)).split('\n').filter(Boolean);

async function completedRun(model: ModelDefinition) {
  const started = await startPipeline(client, db, {
    model: model.id,
    taskQueue: worker.taskQueue,
    trigger: 'test',
    requestedBy: 'test',
  });
  const result = await started.result();
  expect(result.status).toBe('succeeded');
  return result.dataset!;
}

/** Six rows from three subjects, all consenting; "eve" writes two, one of them naming herself. */
async function seedThree(model: ModelDefinition) {
  return seed(
    db,
    model,
    [
      { subject: 'eve', user: 'how many squats today?', assistant: 'Three sets of twelve.' },
      { subject: 'eve', user: 'I am Eve Marlowe, my knee hurts', assistant: 'Rest it for two days, Eve.' },
      { subject: 'ann', user: 'plan for a 5k?', assistant: 'Run three times a week.' },
      { subject: 'ann', user: 'rest days?', assistant: 'Two a week.' },
      { subject: 'bob', user: 'protein?', assistant: 'About 1.6 g per kg.' },
      { subject: 'bob', user: 'stretching?', assistant: 'After every run.' },
    ],
    { eve: true, ann: true, bob: true },
  );
}

describe('DELETE /v1/subjects/:id', () => {
  it('erases raw data, rewrites the datasets that held the subject, flags versions and audits it', async () => {
    // Arrange: a finished run whose dataset holds eve's two rows, and a model version trained on it.
    const model = await createTestModel(db, { config: { validationShare: 0.3 } });
    await seedThree(model);
    const ds = await completedRun(model);
    const before = [...(await lines(ds.train.key)), ...(await lines(ds.validation.key))];
    expect(before).toHaveLength(6);
    const version = await db
      .insertInto('model_versions')
      .values({
        model_id: model.id,
        version: 'v1',
        run_id: null,
        dataset_id: ds.id,
        status: 'candidate',
        adapter_key: null,
        ollama_tag: null,
        metrics: null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();

    // Act
    const res = await api.call('DELETE', `/v1/subjects/eve?app=${model.app}`, adminKey);

    // Assert: the answer says what it touched.
    expect(res.status).toBe(200);
    const e = res.json.erasure;
    expect(e).toMatchObject({ status: 'done', interactionsDeleted: 2, feedbackDeleted: 0 });
    expect(e.datasets).toEqual([{ id: ds.id, rowsRemoved: 2, rewritten: true, objects: expect.any(Array) }]);
    expect(e.modelVersionsFlagged).toEqual([{ id: version.id, version: 'v1', model: model.id }]);

    // Raw data is gone.
    const left = await db
      .selectFrom('subjects')
      .select('id')
      .where('app_id', '=', model.app)
      .where('external_id', '=', 'eve')
      .execute();
    expect(left).toEqual([]);
    const texts = await sql<{
      t: string;
    }>`select messages::text as t from interactions where model_id = ${model.id}`.execute(db);
    expect(texts.rows).toHaveLength(4);
    expect(texts.rows.map((r) => r.t).join()).not.toMatch(/squats|knee/);

    // The stored objects no longer hold eve's rows; the others are untouched and in order.
    const after = [...(await lines(ds.train.key)), ...(await lines(ds.validation.key))];
    expect(after).toHaveLength(4);
    expect(after.join('\n')).not.toMatch(/squats|knee|Marlowe/);
    expect(after).toEqual(before.filter((l) => !/squats|knee|Marlowe|<PERSON_/.test(l)));

    // Manifest (object and database copy) has the new sizes and checksums; lineage matches the new lines.
    const manifest = JSON.parse(await readText(store, ds.manifestKey)) as DatasetManifest;
    for (const split of ['train', 'validation'] as const) {
      const stat = (await store.stat(manifest.splits[split].key))!;
      expect(manifest.splits[split]).toMatchObject({ sha256: stat.sha256, bytes: stat.size });
      expect(manifest.splits[split].count).toBe((await lines(manifest.splits[split].key)).length);
      const items = await db
        .selectFrom('dataset_items')
        .select(['line', 'row_sha256'])
        .where('dataset_id', '=', ds.id)
        .where('split', '=', split)
        .orderBy('line')
        .execute();
      const objectLines = await lines(manifest.splits[split].key);
      expect(items.map((i) => i.row_sha256)).toEqual(objectLines.map((l) => sha256Hex(l)));
      expect(items.map((i) => i.line)).toEqual(objectLines.map((_, i) => i + 1));
    }
    expect(manifest.counts.exported).toBe(4);
    expect(manifest.erasures).toEqual([{ id: e.id, at: expect.any(String), rowsRemoved: 2 }]);
    const dbManifest = await db
      .selectFrom('datasets')
      .select('manifest')
      .where('id', '=', ds.id)
      .executeTakeFirstOrThrow();
    expect(dbManifest.manifest).toEqual(manifest);

    // Flag on the version, audit entry without the subject's id, and the record readable later.
    const flagged = await db
      .selectFrom('model_versions')
      .select('erasure_flags')
      .where('id', '=', version.id)
      .executeTakeFirstOrThrow();
    expect(flagged.erasure_flags).toEqual([{ erasureId: e.id, at: expect.any(String) }]);
    const entry = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'subject.erase')
      .where('target_id', '=', e.id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(entry)).not.toContain('eve');
    const again = await api.call('GET', `/v1/erasures/${e.id}`, adminKey);
    expect(again.json).toEqual(res.json);

    // A later run never sees the subject again.
    await seed(db, model, [{ subject: 'ann', user: 'new question', assistant: 'new answer' }]);
    const next = await completedRun(model);
    expect(next.train.count + next.validation.count).toBe(1);
  });

  it('answers 404 for an unknown subject, 403 for non-admin keys, 400 without an app, and writes nothing', async () => {
    const model = await createTestModel(db);
    await seed(db, model, [{ subject: 'zed', user: 'hi', assistant: 'hello' }], { zed: true });
    const { key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] });
    const erasures = async () =>
      Number((await sql<{ n: string }>`select count(*) n from erasures`.execute(db)).rows[0]!.n);
    const n = await erasures();

    expect((await api.call('DELETE', `/v1/subjects/nobody?app=${model.app}`, adminKey)).status).toBe(404);
    expect((await api.call('DELETE', `/v1/subjects/zed?app=${model.app}`, appKey)).status).toBe(403);
    const noApp = await api.call('DELETE', '/v1/subjects/zed', adminKey);
    expect(noApp.status).toBe(400);
    expect(noApp.json.error.field).toBe('query.app');
    expect((await api.call('DELETE', '/v1/subjects/zed?app=no-such-app', adminKey)).status).toBe(404);

    expect(await erasures()).toBe(n);
    const still = await db.selectFrom('interactions').select('id').where('model_id', '=', model.id).execute();
    expect(still).toHaveLength(1);
  });
});

describe('erasure while a pipeline is running', () => {
  it('keeps the subject out of the dataset when the erasure lands between anonymize and export', async () => {
    // Arrange: a run held at export, so anonymize has already read eve's rows.
    const model = await createTestModel(db);
    await seedThree(model);
    const { held, started } = await startRunHeldAtExport(client, db, deps, model.id);
    try {
      // Act
      const res = await api.call('DELETE', `/v1/subjects/eve?app=${model.app}`, adminKey);
      expect(res.status).toBe(200);
      held.release();
      const result = await started.result();

      // Assert
      expect(result.status).toBe('succeeded');
      const all = [...(await lines(result.dataset!.train.key)), ...(await lines(result.dataset!.validation.key))];
      expect(all).toHaveLength(4);
      expect(all.join('\n')).not.toMatch(/squats|knee|Marlowe/);
      const manifest = JSON.parse(await readText(store, result.dataset!.manifestKey)) as DatasetManifest;
      expect(manifest.counts.withdrawnDuringRun).toBe(2);
      // The redacted working copy is gone once the dataset is ready.
      const work: string[] = [];
      for await (const o of store.list(`datasets/${model.id}/${result.dataset!.id}/work/`)) work.push(o.key);
      expect(work).toEqual([]);
    } finally {
      held.release();
      await held.stop();
    }
  });

  it('re-exports without the subject when the erasure commits while export is writing lineage', async () => {
    // Arrange: a run held at export; then the erasure's transaction deletes eve's rows but does not commit yet.
    // The export's consent check cannot see an uncommitted delete, so it writes eve's rows and then blocks on the
    // lineage foreign key, waiting for the erasure.
    const model = await createTestModel(db);
    await seedThree(model);
    const { held, started } = await startRunHeldAtExport(client, db, deps, model.id);
    const trx = await db.startTransaction().execute();
    let committed = false;
    try {
      const record = await eraseSubjectRecords(trx, { appId: model.app, subject: 'eve', actor: 'test' });
      expect(record).toMatchObject({ interactions: 2, datasets: [] });
      held.release();
      await waitForLockWait(db, 'copy dataset_items%');

      // Act
      await trx.commit().execute();
      committed = true;
      const result = await started.result();

      // Assert
      expect(result.status).toBe('succeeded');
      const all = [...(await lines(result.dataset!.train.key)), ...(await lines(result.dataset!.validation.key))];
      expect(all).toHaveLength(4);
      expect(all.join('\n')).not.toMatch(/squats|knee/);
      const items = await db
        .selectFrom('dataset_items')
        .select('interaction_id')
        .where('dataset_id', '=', result.dataset!.id)
        .execute();
      expect(items).toHaveLength(4);
    } finally {
      if (!committed) await trx.rollback().execute();
      held.release();
      await held.stop();
    }
  });
});

describe('objects derived from a dataset (evaluation pairs, verdicts…) around an erasure', () => {
  const rowsOf = async (ds: { train: { key: string }; validation: { key: string } }) =>
    [...(await lines(ds.train.key)), ...(await lines(ds.validation.key))].map((l) => ({
      row: sha256Hex(l),
      text: l,
    }));

  it('are rewritten by the erasure without the subject, and the answer lists them', async () => {
    // Arrange: a derived object of every row, written before the erasure.
    const model = await createTestModel(db, { config: { validationShare: 0.3 } });
    await seedThree(model);
    const ds = await completedRun(model);
    const key = `runs/test-${ds.id}/derived.jsonl`;
    await putDerivedLines(deps, { key, datasetId: ds.id, runId: null, kind: 'test' }, await rowsOf(ds));

    // Act
    const res = await api.call('DELETE', `/v1/subjects/eve?app=${model.app}`, adminKey);

    // Assert
    expect(res.status).toBe(200);
    expect(res.json.erasure.datasets[0].objects.map((o: { key: string }) => o.key)).toContain(key);
    const left = await lines(key);
    expect(left).toHaveLength(4);
    expect(left.join('\n')).not.toMatch(/squats|knee|Marlowe|<PERSON_/);
  });

  it('leave out the rows of an erasure that committed after the stage read them, even mid-rewrite', async () => {
    // Arrange: the stage has read every row; then the subject's database half is erased, and an erasure's
    // rewrite of the dataset (its exclusive row lock) is under way.
    const model = await createTestModel(db, { config: { validationShare: 0.3 } });
    await seedThree(model);
    const ds = await completedRun(model);
    const read = await rowsOf(ds);
    await db
      .transaction()
      .execute((trx) => eraseSubjectRecords(trx, { appId: model.app, subject: 'eve', actor: 'test' }));
    const rewrite = await db.connection().execute(async (conn) => {
      await sql`begin`.execute(conn);
      await sql`select id from datasets where id = ${ds.id} for update`.execute(conn);
      // Act: the stage writes what it read while the rewrite holds the dataset.
      const writing = putDerivedLines(
        deps,
        { key: `runs/test-${ds.id}/late.jsonl`, datasetId: ds.id, runId: null, kind: 'test' },
        read,
      );
      // Its registration (the foreign key's share lock on the dataset row) waits for the rewrite to end.
      await waitForLockWait(db, '%insert into "derived_objects"%');
      await sql`commit`.execute(conn);
      return writing;
    });

    // Assert
    expect(rewrite).toMatchObject({ lines: 4, erased: 2 });
    const left = await lines(`runs/test-${ds.id}/late.jsonl`);
    expect(left.join('\n')).not.toMatch(/squats|knee|Marlowe|<PERSON_/);
  });
});

describe('an erasure interrupted after its database half', () => {
  it('is completed by resumePendingErasures, and a second run of its workflow changes nothing', async () => {
    // Arrange: the database half committed, no workflow started (the API died in between).
    const model = await createTestModel(db, { config: { validationShare: 0 } });
    await seedThree(model);
    const ds = await completedRun(model);
    const record = (await db
      .transaction()
      .execute((trx) => eraseSubjectRecords(trx, { appId: model.app, subject: 'bob', actor: 'test' })))!;
    expect(record.status).toBe('pending');
    expect(await lines(ds.train.key)).toHaveLength(6);

    // Act
    expect(await resumePendingErasures(db, client, worker.taskQueue, testLog)).toBeGreaterThanOrEqual(1);
    const result = await (await startErasure(client, { erasureId: record.id, taskQueue: worker.taskQueue })).result();

    // Assert
    expect(result.datasets).toEqual([{ datasetId: ds.id, rowsRemoved: 2, objects: expect.any(Array) }]);
    const after = await lines(ds.train.key);
    expect(after).toHaveLength(4);
    expect(after.join('\n')).not.toMatch(/protein|stretching/);
    const sha = (await store.stat(ds.train.key))!.sha256;
    await deps.db.updateTable('erasures').set({ status: 'pending' }).where('id', '=', record.id).execute();
    const { createErasureActivities } = await import('../../src/activities/erasure');
    await createErasureActivities(deps).rewriteErasedDatasets({ erasureId: record.id });
    expect((await store.stat(ds.train.key))!.sha256).toBe(sha);
  });
});

describe('consent input', () => {
  it('refuses a lone surrogate or a control character in the subject id or policy version, writing nothing', async () => {
    const model = await createTestModel(db);
    const { key } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] });
    const count = async () =>
      Number((await sql<{ n: string }>`select count(*) n from consent_events`.execute(db)).rows[0]!.n);
    const n = await count();

    const bad = await api.call('PUT', '/v1/subjects/u1/consent', key, { training: true, policyVersion: 'v1\ud800' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe('body.policyVersion');
    const ctl = await api.call('PUT', `/v1/subjects/${encodeURIComponent('u\u0001')}/consent`, key, {
      training: true,
      policyVersion: 'v1',
    });
    expect(ctl.status).toBe(400);
    expect(await count()).toBe(n);
  });
});

describe('after an erasure, old writes of the subject’s interactions', () => {
  const chat = (id: string, subject: string, model: ModelDefinition) => ({
    model: model.id,
    subject,
    id,
    messages: [
      { role: 'user', content: `question ${id}` },
      { role: 'assistant', content: `answer ${id}` },
    ],
  });
  const subjectRows = (model: ModelDefinition, subject: string) =>
    db.selectFrom('subjects').select('id').where('app_id', '=', model.app).where('external_id', '=', subject).execute();
  const interactionIds = async (model: ModelDefinition) =>
    (await db.selectFrom('interactions').select('external_id').where('model_id', '=', model.id).execute()).map(
      (r) => r.external_id,
    );

  it('are refused, alone (410) or per item in a batch, without bringing back the subject', async () => {
    // Arrange: zoe wrote z-1 alone and z-2 in a batch with ann's a-1; then zoe was erased.
    const model = await createTestModel(db);
    const { key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] });
    expect((await api.call('POST', '/v1/interactions', appKey, chat('z-1', 'zoe', model))).status).toBe(201);
    const first = { interactions: [chat('z-2', 'zoe', model), chat('a-1', 'ann', model)] };
    expect((await api.call('POST', '/v1/interactions', appKey, first)).status).toBe(201);
    expect((await api.call('DELETE', `/v1/subjects/zoe?app=${model.app}`, adminKey)).status).toBe(200);

    // Act: the app's retry queue sends everything again, with one new interaction of ann's
    const single = await api.call('POST', '/v1/interactions', appKey, chat('z-1', 'zoe', model));
    const batch = await api.call('POST', '/v1/interactions', appKey, {
      interactions: [chat('z-2', 'zoe', model), chat('a-1', 'ann', model), chat('a-2', 'ann', model)],
    });

    // Assert
    expect(single.status).toBe(410);
    expect(single.json.error).toMatchObject({ code: 'erased', field: 'body.id' });
    expect(single.json.error.message).toContain('z-1');
    expect(batch.status).toBe(201);
    expect(batch.json).toMatchObject({ accepted: 1, duplicates: 1, erased: 1 });
    expect(batch.json.interactions[0]).toEqual({ id: null, externalId: 'z-2', duplicate: false, erased: true });
    expect((await interactionIds(model)).sort()).toEqual(['a-1', 'a-2']);
    expect(await subjectRows(model, 'zoe')).toEqual([]);
    // The tombstones keep no app id in the clear.
    const stones = await db.selectFrom('erased_interactions').selectAll().where('model_id', '=', model.id).execute();
    expect(stones).toHaveLength(2);
    expect(JSON.stringify(stones)).not.toMatch(/z-1|z-2|zoe/);
  });

  it('are skipped and counted by tuneloop import; new interactions of the same subject are stored', async () => {
    // Arrange
    const model = await createTestModel(db);
    await seed(db, model, [{ subject: 'zoe', id: 'z-1', user: 'hi', assistant: 'hello' }], { zoe: true });
    expect((await api.call('DELETE', `/v1/subjects/zoe?app=${model.app}`, adminKey)).status).toBe(200);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'erased-import-'));
    const file = path.join(dir, 'log.jsonl');
    await writeFile(
      file,
      [chat('z-1', 'zoe', model), chat('z-9', 'zoe', model)].map((l) => JSON.stringify(l)).join('\n'),
    );

    // Act
    const report = await importInteractions(
      db,
      { file, model: model.id, strict: false, batch: 100 },
      { warn: () => {}, log: testLog },
    );

    // Assert: z-9 is new (zoe came back as a new subject, with no consent: never trained on until she gives it)
    expect(report).toMatchObject({ imported: 1, erased: 1, duplicates: 0, rejectedCount: 0 });
    expect(await interactionIds(model)).toEqual(['z-9']);
    const [subject] = await db
      .selectFrom('subjects')
      .select('training_consent')
      .where('app_id', '=', model.app)
      .where('external_id', '=', 'zoe')
      .execute();
    expect(subject).toEqual({ training_consent: null });
  });

  it('that race the erasure are refused whole with 503 + Retry-After, and the retry is answered 410', async () => {
    // Arrange: zoe's erasure has deleted her rows but not committed; the app retries z-1 meanwhile.
    const model = await createTestModel(db);
    const { key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] });
    expect((await api.call('POST', '/v1/interactions', appKey, chat('z-1', 'zoe', model))).status).toBe(201);
    const trx = await db.startTransaction().execute();
    let committed = false;
    try {
      await eraseSubjectRecords(trx, { appId: model.app, subject: 'zoe', actor: 'test' });
      const racing = api.call('POST', '/v1/interactions', appKey, chat('z-1', 'zoe', model));
      await waitForLockWait(db, '%insert into subjects%');

      // Act
      await trx.commit().execute();
      committed = true;
      const raced = await racing;
      const retried = await api.call('POST', '/v1/interactions', appKey, chat('z-1', 'zoe', model));

      // Assert
      expect(raced.status).toBe(503);
      expect(raced.json.error.code).toBe('retry');
      expect(raced.headers.get('retry-after')).toBe('1');
      expect(retried.status).toBe(410);
      expect(await interactionIds(model)).toEqual([]);
      expect(await subjectRows(model, 'zoe')).toEqual([]);
    } finally {
      if (!committed) await trx.rollback().execute();
    }
  });
});
