import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { QualityReport } from '../../src/activities/score';
import { createApiKey } from '../../src/api/auth';
import { insertFeedback } from '../../src/db/queries/feedback';
import type { ModelDefinition } from '../../src/domain/model-config';
import { DEMO_BASE_MODEL, ensureDemoBaseModel } from '../../src/embedded/base-models';
import { startPipeline } from '../../src/temporal/pipeline-client';
import type { PipelineResult } from '../../src/workflows/messages';
import type { StageResults } from '../../src/workflows/run-status';
import {
  coachingRows,
  createTestModel,
  depsWithOwnOllama,
  seed,
  startTestApi,
  startTestWorker,
  temporalClient,
  testTrainer,
  uid,
} from '../helpers/env';

/**
 * Synthesize and score on a real small model: SmolLM2-135M-Instruct is the teacher and the judge, through the
 * pipeline on the real Temporal dev server, PostgreSQL, the store and an Ollama of this file's own (one thread).
 * Training is switched off: what is checked is that a real model's messages, answers and ratings go through the
 * stages as valid rows, and that the run's quality report shows its best and worst rows redacted, from PostgreSQL,
 * so that an erased subject's row is no longer shown.
 */

const tag = `${uid('smol-')}:latest`;
const SYNTHETIC = 2;
let env: Awaited<ReturnType<typeof depsWithOwnOllama>>;
let temporal: Awaited<ReturnType<typeof temporalClient>>;
let worker: Awaited<ReturnType<typeof startTestWorker>>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let model: ModelDefinition;
let result: PipelineResult;
let runId: string;
/** Interaction id → subject, of the seeded rows. */
const subjectOf = new Map<string, string>();

/** Every row names its asker and their e-mail address: whichever rows the report shows, they must be redacted. */
const NAMES = ['Maria Lopez', 'John Smith', 'Aiko Tanaka', 'Peter Novak', 'Sara Berg'];
const emailOf = (i: number) => `${NAMES[i % 5]!.toLowerCase().replace(' ', '.')}${i}@example.com`;

beforeAll(async () => {
  await ensureDemoBaseModel({ ...(await testTrainer()), modelsDir: inject('modelsDir') });
  env = await depsWithOwnOllama(tag, DEMO_BASE_MODEL);
  const { db } = env.deps;
  temporal = await temporalClient();
  worker = await startTestWorker({ deps: env.deps });
  api = await startTestApi({ db, temporal: temporal.client, store: env.deps.store, taskQueue: worker.taskQueue });
  model = await createTestModel(db, {
    systemPrompt: 'You are FitCoach, a friendly fitness coach. Answer in two short sentences.',
    config: {
      validationShare: 0.5,
      stages: { train: false },
      synthesize: {
        teacher: { provider: 'ollama', model: tag },
        specs: [
          {
            name: 'questions',
            prompt: 'Write a question a {level} athlete asks their fitness coach about {exercise}.',
            slots: { level: ['beginner', 'advanced'], exercise: ['squats', 'planks'] },
            count: SYNTHETIC,
          },
        ],
        concurrency: 1,
        maxTokens: 32,
      },
      score: {
        judge: { provider: 'ollama', model: tag },
        language: 'eng',
        maxTokens: 64,
        concurrency: 1,
        calibration: { minRows: 1000, whenUncalibrated: 'keep' },
      },
    },
  });
  const rows = coachingRows(6).map((r, i) => ({
    ...r,
    user: `Hi, I'm ${NAMES[i % 5]} (${emailOf(i)}). ${r.user}`,
  }));
  const ids = await seed(db, model, rows, { u0: true, u1: true, u2: true, u3: true, u4: true });
  ids.forEach((id, i) => subjectOf.set(id, rows[i]!.subject));
  // People rated three rows: a 5, a 3 and a thumbs-down (kept out, and what the judge is calibrated on).
  await db.transaction().execute(async (trx) => {
    for (const [i, f] of [
      [0, { rating: 5 }],
      [1, { rating: 3 }],
      [2, { thumbs: 'down' as const }],
    ] as const) {
      await insertFeedback(trx, {
        interactionId: ids[i]!,
        externalId: null,
        thumbs: 'thumbs' in f ? f.thumbs : null,
        rating: 'rating' in f ? f.rating : null,
        correction: null,
        comment: null,
      });
    }
  });
  const run = await startPipeline(temporal.client, db, {
    model: model.id,
    taskQueue: worker.taskQueue,
    trigger: 'test',
    requestedBy: 'test',
  });
  runId = run.runId;
  result = await run.result();
}, 900_000);

afterAll(async () => {
  await api?.close();
  await worker?.stop();
  await temporal?.close();
  await env?.close();
});

const summaryOf = <K extends 'synthesize'>(name: K) =>
  result.stages.find((s) => s.name === name)!.summary as unknown as StageResults[K];

describe('synthesize and score with SmolLM2-135M-Instruct as teacher and judge', () => {
  it('writes valid conversations, judges every row, and trains on synthetic rows only', async () => {
    expect(result.status).toBe('succeeded');
    const { db } = env.deps;

    // Synthesize: every sample asked for, made or counted as dropped; the made ones stored as whole exchanges
    const synth = summaryOf('synthesize');
    const spec = synth.specs[0]!;
    expect(spec.generated + spec.invalid).toBe(SYNTHETIC);
    expect(spec.generated).toBeGreaterThan(0);
    const made = await db
      .selectFrom('interactions')
      .select(['id', 'messages'])
      .where('model_id', '=', model.id)
      .where('source', '=', 'synthetic')
      .execute();
    expect(made).toHaveLength(spec.generated);
    for (const r of made) {
      expect(r.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
      expect(r.messages.every((m) => m.content.trim().length > 0)).toBe(true);
    }

    // Score: 5 real rows (the thumbs-down one stays out) and the synthetic ones, each scored by people or the
    // judge unless its length or language left it out first; the real judge's every answer a valid rating
    const score = result.stages.find((s) => s.name === 'score')!.summary as unknown as QualityReport;
    const c = score.counts;
    expect(c.considered).toBe(5 + spec.generated);
    expect(c.judgeInvalid).toBe(0);
    expect(c.byHuman).toBe(2);
    expect(c.byHuman + c.byJudge + c.tooShort + c.tooLong + c.wrongLanguage).toBe(c.considered);
    expect(c.byJudge).toBeGreaterThan(0);
    const judged = await db
      .selectFrom('row_scores as s')
      .innerJoin('interactions as i', 'i.id', 's.interaction_id')
      .select(['s.score', 's.reason'])
      .where('i.model_id', '=', model.id)
      .execute();
    expect(judged.length).toBe(c.judgedNow);
    for (const j of judged) {
      expect([0, 0.25, 0.5, 0.75, 1]).toContain(j.score);
      expect(typeof j.reason).toBe('string');
    }
    // Calibration had the 5, the 3 and the thumbs-down, if the judge rated them: too few to filter on
    expect(score.judgeFiltered).toBe(false);

    // Export: synthetic rows train only
    const items = await db
      .selectFrom('dataset_items as d')
      .innerJoin('interactions as i', 'i.id', 'd.interaction_id')
      .select(['d.split', 'i.source'])
      .where('i.model_id', '=', model.id)
      .execute();
    expect(items.filter((i) => i.source === 'synthetic' && i.split === 'validation')).toEqual([]);
    expect(items.filter((i) => i.source === 'synthetic').every((i) => i.split === 'train')).toBe(true);
  });

  it('shows the best and worst rows in GET /v1/runs/:id, redacted, and no longer an erased subject’s', async () => {
    // Arrange
    const { db } = env.deps;
    const { key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] });
    const { key: adminKey } = await createApiKey(db, { name: 'root', role: 'admin', appId: null, models: [] });
    type Shown = { id: string; score: number; by: string; messages: { role: string; content: string }[] | null };
    const examplesOf = async () => {
      const r = await api.call('GET', `/v1/runs/${runId}`, appKey);
      expect(r.status).toBe(200);
      const score = (r.json.run.stages as { name: string; summary: { examples: Record<string, Shown[]> } }[]).find(
        (s) => s.name === 'score',
      )!;
      return [...score.summary.examples.best!, ...score.summary.examples.worst!];
    };

    // Act
    const before = await examplesOf();
    const erasedSubject = before.map((e) => subjectOf.get(e.id)).find((s) => s !== undefined)!;
    const erased = await api.call('DELETE', `/v1/subjects/${erasedSubject}?app=${model.app}`, adminKey);
    const after = await examplesOf();

    // Assert: every example shown, with no name or address; the seeded ones with the redactor's placeholders
    expect(before.length).toBeGreaterThan(0);
    for (const e of before) {
      expect(e.messages, JSON.stringify(e)).not.toBeNull();
      const text = JSON.stringify(e.messages);
      expect(text).not.toMatch(/@example\.com|Maria Lopez|John Smith|Aiko Tanaka|Peter Novak|Sara Berg/);
      if (subjectOf.has(e.id)) expect(text).toContain('<EMAIL_1>');
    }
    expect(erased.status).toBe(200);
    for (const e of after) {
      if (subjectOf.get(e.id) === erasedSubject) {
        expect(e).toMatchObject({ messages: null, unavailable: 'erased, or its subject withdrew consent' });
      } else {
        expect(e.messages).not.toBeNull();
      }
    }
    expect(after.map((e) => e.id)).toEqual(before.map((e) => e.id));
  });
});
