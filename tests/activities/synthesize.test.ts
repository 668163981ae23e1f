import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnonymizeActivities } from '../../src/activities/anonymize';
import { createCollectActivities } from '../../src/activities/collect';
import type { ActivityDeps } from '../../src/activities/deps';
import { createExportActivities } from '../../src/activities/export';
import { createSynthesizeActivities } from '../../src/activities/synthesize';
import type { ModelDefinition } from '../../src/domain/model-config';
import { coachingRows, createTestModel, depsWithOwnOllama, seed, uid } from '../helpers/env';

/**
 * The synthesize stage on the real stack: the real tiny model in an Ollama of this file's own as the teacher (what
 * it writes is noise; what the stage does with it is tested), PostgreSQL, the store, and the stages around it.
 */

let deps: ActivityDeps;
let env: Awaited<ReturnType<typeof depsWithOwnOllama>>;
const teacherTag = `${uid('teacher-')}:latest`;

beforeAll(async () => {
  env = await depsWithOwnOllama(teacherTag);
  deps = env.deps;
}, 180_000);

afterAll(async () => {
  await env?.close();
});

const activities = () => ({
  ...createCollectActivities(deps),
  ...createAnonymizeActivities(deps),
  ...createSynthesizeActivities(deps),
  ...createExportActivities(deps),
});

async function modelWith(count: number, concurrency = 2, viaIncumbent = false): Promise<ModelDefinition> {
  const model = await createTestModel(deps.db, {
    config: {
      validationShare: 0.5,
      // The incumbent, when asked for: this file's Ollama through its OpenAI-compatible surface.
      ...(viaIncumbent ? { incumbent: { baseUrl: `${env.url}/v1`, model: teacherTag, timeoutMs: 60_000 } } : {}),
      synthesize: {
        teacher: viaIncumbent ? { provider: 'incumbent' } : { provider: 'ollama', model: teacherTag },
        specs: [
          {
            name: 'quiz',
            prompt: 'Write a {level} question a student asks their coach about {exercise}.',
            slots: { level: ['beginner', 'advanced'], exercise: ['squats', 'lunges', 'planks'] },
            count,
          },
        ],
        concurrency,
        maxTokens: 16,
      },
    },
  });
  await seed(deps.db, model, coachingRows(8), { u0: true, u1: true, u2: true, u3: true, u4: true });
  return model;
}

async function begin(model: ModelDefinition) {
  const runId = uid('run-');
  await deps.db
    .insertInto('runs')
    .values({ id: runId, workflow_id: `pipeline:${model.id}`, model_id: model.id, status: 'running', trigger: 'test' })
    .execute();
  const a = activities();
  const collected = await a.collect({ runId, model: model.id });
  const anonymized = await a.anonymize({ runId, model: model.id, datasetId: collected.datasetId });
  return {
    a,
    runId,
    collected,
    anonymized,
    input: { runId, model: model.id, datasetId: collected.datasetId, anonymized },
  };
}

const synthetic = (model: ModelDefinition) =>
  deps.db
    .selectFrom('interactions')
    .select(['id', 'external_id', 'metadata', 'messages'])
    .where('model_id', '=', model.id)
    .where('source', '=', 'synthetic')
    .execute();

describe('the synthesize stage', () => {
  it('writes valid conversations from the spec, trains on them but never validates on them, and a retry makes none again', async () => {
    // Arrange
    const model = await modelWith(6);
    const { a, runId, collected, anonymized, input } = await begin(model);

    // Act
    const first = await a.synthesize(input);
    const again = await a.synthesize(input);
    const exported = await a.exportDataset({
      runId,
      model: model.id,
      datasetId: collected.datasetId,
      anonymized: again.rows,
    });

    // Assert: every sample stored once, with the teacher and the spec's hash; nothing made twice
    const spec = first.specs[0]!;
    const rows = await synthetic(model);
    expect(spec.generated + spec.invalid).toBe(6);
    expect(rows).toHaveLength(spec.generated);
    expect(new Set(rows.map((r) => r.external_id)).size).toBe(rows.length);
    expect(again.specs[0]).toMatchObject({ stored: rows.length, generated: 0 });
    expect(again.specs[0]!.generated + again.specs[0]!.invalid).toBe(6 - rows.length);
    for (const r of rows) {
      expect(r.metadata).toMatchObject({
        synthetic: { teacher: `ollama:${teacherTag}`, spec: 'quiz', specHash: spec.hash },
      });
      expect(r.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    }
    expect(first.rows.rows).toBe(anonymized.rows + rows.length);
    // Real rows split half and half; synthetic ones train only
    const items = await deps.db
      .selectFrom('dataset_items as d')
      .innerJoin('interactions as i', 'i.id', 'd.interaction_id')
      .select(['d.split', 'i.source'])
      .where('d.dataset_id', '=', collected.datasetId)
      .execute();
    expect(items.filter((i) => i.source === 'synthetic' && i.split === 'validation')).toEqual([]);
    expect(items.filter((i) => i.source === 'synthetic')).toHaveLength(rows.length);
    expect(exported.train.count + exported.validation.count).toBe(items.length);
    // The next run (the watermark has not moved: no run finished) collects the app's 8 rows, not the synthetic ones
    const next = await begin(model);
    expect(next.collected.interactions).toBe(8);
    expect(next.anonymized.rows).toBe(8);
  }, 300_000);

  it('loses at most the calls in flight when the teacher dies, and the retry makes only the rest', async () => {
    // Arrange: one call at a time, the teacher taken away once a batch is stored
    const model = await modelWith(24, 1);
    const { a, input } = await begin(model);
    const running = a.synthesize(input).then(
      () => null,
      (err: unknown) => err,
    );
    await expect
      .poll(async () => (await synthetic(model)).length, { timeout: 120_000, interval: 20 })
      .toBeGreaterThan(0);
    await deps.ollama.delete(teacherTag);

    // Act
    const failure = await running;
    const madeBefore = (await synthetic(model)).length;
    await env.reimport();
    const retried = await a.synthesize(input);

    // Assert: the first attempt failed as retryable, kept what it made; the retry made the rest, nothing twice
    expect(failure).toMatchObject({ type: 'TEACHER_UNAVAILABLE', nonRetryable: false });
    expect(madeBefore).toBeGreaterThan(0);
    expect(madeBefore).toBeLessThan(24);
    const rows = await synthetic(model);
    expect(new Set(rows.map((r) => r.external_id)).size).toBe(rows.length);
    expect(rows.length).toBe(madeBefore + retried.specs[0]!.generated);
    expect(rows.length + retried.specs[0]!.invalid).toBe(24);
  }, 300_000);

  it('is taught by the incumbent too: the hosted model behind its OpenAI-compatible surface', async () => {
    // Arrange
    const model = await modelWith(4, 2, true);
    const { a, input } = await begin(model);

    // Act
    const done = await a.synthesize(input);

    // Assert: each sample made or counted, the made ones stored as the incumbent's
    const spec = done.specs[0]!;
    expect(done.teacher).toBe(`incumbent:${teacherTag}`);
    expect(spec.generated + spec.invalid).toBe(4);
    const rows = await synthetic(model);
    expect(rows).toHaveLength(spec.generated);
    for (const r of rows) expect(r.metadata).toMatchObject({ synthetic: { teacher: `incumbent:${teacherTag}` } });
  }, 300_000);
});
