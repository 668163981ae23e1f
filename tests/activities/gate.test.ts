import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateActivities } from '../../src/activities/gate';
import type { ActivityDeps } from '../../src/activities/deps';
import { getVersion } from '../../src/db/queries/registry';
import type { ModelDefinition } from '../../src/domain/model-config';
import { createTestDb, createTestModel, createTestStore, testLog, testOllama, tmpDir } from '../helpers/env';

/** The gate on the database: a rejected candidate stays in the registry with its reasons and never gets a tag. */

let deps: ActivityDeps;
let drop: () => Promise<void>;
let model: ModelDefinition;

beforeAll(async () => {
  const { db, drop: dropDb } = await createTestDb();
  drop = dropDb;
  deps = { db, store: await createTestStore(), log: testLog, ollama: testOllama(), tmpDir: await tmpDir() };
  model = await createTestModel(db, { config: { thresholds: { maxLossRegression: 0.05 } } });
});
afterAll(async () => drop?.());

const candidate = async (name: string) =>
  (
    await deps.db
      .insertInto('model_versions')
      .values({ model_id: model.id, version: name, status: 'candidate', adapter_key: `a/${name}/` })
      .returning('id')
      .executeTakeFirstOrThrow()
  ).id;

const evaluation = (loss: number, baselineLoss: number) => ({
  candidate: { loss, perplexity: Math.exp(loss), tokens: 100 },
  baselineName: 'production' as const,
  baseline: { loss: baselineLoss, perplexity: Math.exp(baselineLoss), tokens: 100 },
  pairsKey: null,
  prompts: 0,
  answers: null,
});

describe('decideGate', () => {
  it('rejects a candidate worse than production: recorded on the version with the reasons, no tag', async () => {
    const versionId = await candidate('worse');

    const verdict = await createGateActivities(deps).decideGate({
      runId: 'r1',
      model: model.id,
      versionId,
      evaluation: evaluation(2.0, 1.7),
      judge: null,
    });

    expect(verdict.passed).toBe(false);
    const row = await getVersion(deps.db, versionId);
    expect(row).toMatchObject({ status: 'rejected', ollama_tag: null });
    expect(row?.status_reason).toMatch(/held-out loss/);
    expect((row?.metrics as { gate: { passed: boolean } }).gate.passed).toBe(false);
  });

  it('passes a candidate within the allowed regression and leaves it a candidate', async () => {
    const versionId = await candidate('fine');

    const verdict = await createGateActivities(deps).decideGate({
      runId: 'r2',
      model: model.id,
      versionId,
      evaluation: evaluation(1.74, 1.7),
      judge: null,
    });

    expect(verdict.passed).toBe(true);
    expect((await getVersion(deps.db, versionId))?.status).toBe('candidate');
  });
});
