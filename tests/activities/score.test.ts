import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnonymizeActivities } from '../../src/activities/anonymize';
import { createCollectActivities } from '../../src/activities/collect';
import type { ActivityDeps } from '../../src/activities/deps';
import { createExportActivities } from '../../src/activities/export';
import { createScoreActivities } from '../../src/activities/score';
import { insertFeedback } from '../../src/db/queries/feedback';
import type { ModelDefinition } from '../../src/domain/model-config';
import { coachingRows, createTestModel, depsWithOwnOllama, seed, uid } from '../helpers/env';

/**
 * The score stage on the real stack: the real tiny model in Ollama as the judge, PostgreSQL, the store, the stages
 * before it (collect, anonymize) and export after it. What the tiny judge says is noise; what is tested is what the
 * stage does with it: every row scored, people's scores first, the cache, the calibration bar, the report.
 */

let deps: ActivityDeps;
let env: Awaited<ReturnType<typeof depsWithOwnOllama>>;
const judgeTag = `${uid('judge-')}:latest`;

beforeAll(async () => {
  env = await depsWithOwnOllama(judgeTag);
  deps = env.deps;
}, 180_000);

afterAll(async () => {
  await env?.close();
});

const activities = () => ({
  ...createCollectActivities(deps),
  ...createAnonymizeActivities(deps),
  ...createScoreActivities(deps),
  ...createExportActivities(deps),
});

let offset = 0;

/**
 * A model scored by the tiny judge, with 12 coaching rows, 6 of them rated by people, and one row in French. Each
 * model's rows are its own (scores are cached by a row's bytes, whichever model it came from).
 */
async function setUp(score: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<ModelDefinition> {
  const model = await createTestModel(deps.db, {
    config: {
      ...extra,
      validationShare: 0,
      // The tiny model pads its JSON with runs of tabs (the grammar allows any white space): room for them.
      score: { judge: { provider: 'ollama', model: judgeTag }, language: 'eng', maxTokens: 200, ...score },
    },
  });
  const rows = coachingRows(12, offset);
  offset += 12;
  rows.push({
    subject: 'u0',
    id: 'row-fr',
    user: `Que dois-je faire pour les squats lundi prochain ? (${offset})`,
    assistant: 'Lundi, faites trois séries de dix squats et reposez-vous une minute entre les séries.',
  });
  const ids = await seed(deps.db, model, rows, { u0: true, u1: true, u2: true, u3: true, u4: true });
  // People rated six rows: three 5s, one 3 (kept by anonymize, under the threshold), two thumbs-down.
  const ratings: [number, { thumbs?: 'up' | 'down'; rating?: number }][] = [
    [0, { rating: 5 }],
    [1, { rating: 5 }],
    [2, { rating: 5 }],
    [3, { rating: 3 }],
    [4, { thumbs: 'down' }],
    [5, { thumbs: 'down' }],
  ];
  await deps.db.transaction().execute(async (trx) => {
    for (const [i, f] of ratings) {
      await insertFeedback(trx, {
        interactionId: ids[i]!,
        externalId: null,
        thumbs: f.thumbs ?? null,
        rating: f.rating ?? null,
        correction: null,
        comment: null,
      });
    }
  });
  return model;
}

async function runScore(model: ModelDefinition, runId = uid('run-')) {
  const a = activities();
  await deps.db
    .insertInto('runs')
    .values({ id: runId, workflow_id: `pipeline:${model.id}`, model_id: model.id, status: 'running', trigger: 'test' })
    .execute();
  const collected = await a.collect({ runId, model: model.id });
  const anonymized = await a.anonymize({ runId, model: model.id, datasetId: collected.datasetId });
  const scored = await a.score({ runId, model: model.id, datasetId: collected.datasetId, anonymized });
  return { a, runId, datasetId: collected.datasetId, anonymized, scored };
}

const judgedScores = (model: ModelDefinition) =>
  deps.db
    .selectFrom('row_scores as s')
    .innerJoin('interactions as i', 'i.id', 's.interaction_id')
    .select(['s.interaction_id', 's.score', 's.reason', 's.judge'])
    .where('i.model_id', '=', model.id)
    .execute();

describe('the score stage', () => {
  it('scores every row, people’s first, caches the judge, and a retry judges nothing again', async () => {
    // Arrange
    const model = await setUp({ calibration: { minRows: 1000, whenUncalibrated: 'keep' } });

    // Act
    const { a, runId, datasetId, anonymized, scored } = await runScore(model);
    const again = await a.score({ runId, model: model.id, datasetId, anonymized });
    const exported = await a.exportDataset({ runId, model: model.id, datasetId, anonymized: scored.rows });

    // Assert: 11 rows reach scoring (two rated down stay out); 12 judged once: 10 of them (not the French one) and
    // the two rated down, for calibration
    const q = scored.quality;
    expect(anonymized.rows).toBe(11);
    expect(q.counts.considered).toBe(11);
    expect(q.counts.byHuman).toBe(4);
    expect(q.counts.judgeInvalid).toBe(0); // a 1–5 rating held by the grammar, read even when the reason runs on
    expect(q.counts.byJudge + q.counts.byHuman).toBe(10); // the French row is left out before any judge sees it
    expect(q.counts.judgedNow).toBe(12);
    expect(again.quality.counts.judgedNow).toBe(0);
    expect(again.quality.counts).toEqual({ ...q.counts, judgedNow: 0 });
    const cached = await judgedScores(model);
    expect(cached).toHaveLength(12);
    expect(cached.every((s) => s.judge === `ollama:${judgeTag}` && s.score >= 0 && s.score <= 1)).toBe(true);
    // The French row is out; the rating of 3 (0.5) is under the threshold: people's scores always filter.
    expect(q.counts.wrongLanguage).toBe(1);
    expect(q.counts.lowScore).toBe(1);
    expect(q.judgeFiltered).toBe(false);
    expect(q.why).toContain('rows kept');
    expect(q.calibration.rows).toBe(6); // the 4 rated rows kept, and the 2 rated down
    expect(q.counts.kept).toBe(9);
    expect(q.sources.api).toMatchObject({ considered: 11, kept: 9, lowScore: 1, wrongLanguage: 1 });
    expect(q.histogram.human).toEqual([0, 0, 0, 0, 0, 1, 0, 0, 0, 3]);
    expect(q.examples.best[0]).toMatchObject({ score: 1, by: 'human' });
    expect(exported.train.count).toBe(9);
    const stored = await deps.db
      .selectFrom('datasets')
      .select('quality')
      .where('id', '=', datasetId)
      .executeTakeFirstOrThrow();
    expect(stored.quality).toMatchObject({ counts: again.quality.counts, judge: `ollama:${judgeTag}` });
  }, 300_000);

  it('does not filter on a judge below the agreement bar, and the same judge trusted does', async () => {
    // Arrange: the bar at perfect agreement (kappa 1), and a threshold every judge score under 1 fails
    const barred = await setUp({ threshold: 0.99, calibration: { minRows: 1, minKappa: 1 } });
    const trusted = await setUp({ threshold: 0.99, calibration: { minRows: 1000, whenUncalibrated: 'filter' } });

    // Act
    const below = (await runScore(barred)).scored;
    const filtered = (await runScore(trusted)).scored;

    // Assert
    expect(below.quality.judgeFiltered).toBe(false);
    expect(below.quality.why).toMatch(/kappa .* below 1/);
    // Only people's scores dropped rows: the rating of 3
    expect(below.quality.counts.lowScore).toBe(1);
    expect(filtered.quality.judgeFiltered).toBe(true);
    const judgedLow = (await judgedScores(trusted)).filter((s) => s.score < 0.99).length;
    expect(judgedLow).toBeGreaterThan(0);
    expect(filtered.quality.counts.lowScore).toBeGreaterThan(1);
    expect(filtered.quality.counts.kept).toBeLessThan(below.quality.counts.kept);
  }, 300_000);

  it('erasing a subject takes the judge’s words about their rows with it', async () => {
    // Arrange
    const model = await setUp({});
    await runScore(model);
    const before = await judgedScores(model);
    expect(before.length).toBeGreaterThan(0);

    // Act: the rows go (as an erasure deletes them)
    await deps.db.deleteFrom('interactions').where('model_id', '=', model.id).execute();

    // Assert
    expect(await judgedScores(model)).toEqual([]);
    const left = await deps.db.selectFrom('row_scores').select('interaction_id').execute();
    expect(left.every((r) => !before.some((b) => b.interaction_id === r.interaction_id))).toBe(true);
  }, 300_000);

  it('judges through the incumbent too: the hosted model behind its OpenAI-compatible surface', async () => {
    // Arrange: the incumbent is this file's Ollama, through its /v1 (OpenAI's wire format, structured output)
    const model = await setUp(
      { judge: { provider: 'incumbent' }, calibration: { minRows: 1000, whenUncalibrated: 'keep' } },
      { incumbent: { baseUrl: `${env.url}/v1`, model: judgeTag, timeoutMs: 60_000 } },
    );

    // Act
    const { scored } = await runScore(model);

    // Assert: every row people did not rate is judged by the incumbent, each a valid rating
    const q = scored.quality;
    expect(q.judge).toBe(`incumbent:${judgeTag}`);
    expect(q.counts.judgeInvalid).toBe(0);
    expect(q.counts.byJudge + q.counts.byHuman).toBe(10);
    const cached = await judgedScores(model);
    expect(cached.length).toBe(q.counts.judgedNow);
    expect(cached.every((s) => s.judge === `incumbent:${judgeTag}` && s.score >= 0 && s.score <= 1)).toBe(true);
  }, 300_000);
});
