import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import type { Activities } from '../../src/activities';
import type { GpuActivities } from '../../src/activities/gpu';
import type { RunOutcome } from '../../src/domain/failures';
import { parsePipelineConfig } from '../../src/domain/model-config';
import { REPO_ROOT } from '../../src/config';
import { bundleWorkflows } from '../../src/temporal/worker';
import { SEARCH_ATTRIBUTES } from '../../src/embedded/temporal-dev-server';
import { temporal } from '@temporalio/proto';
import { installTemporalRuntime } from '../../src/temporal/temporal-runtime';
import { createLogger } from '../../src/log';
import {
  statusQuery,
  WORKFLOW_TYPE,
  type PipelineInput,
  type PipelineResult,
  type PipelineStatus,
} from '../../src/workflows/messages';

/**
 * Decision tests: the real workflow code on Temporal's time-skipping test server (scripts/setup.sh --test-server
 * fetches it), with fake activities typed from the real factories. Days of timers pass in milliseconds; no
 * database, store, trainer or Ollama is involved.
 */

export type AllActivities = Activities & GpuActivities;
type Fakes = { [K in keyof AllActivities]: AllActivities[K] };

installTemporalRuntime(createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'), process.env.TEST_LOG_LEVEL ?? 'error');

let bundle: Promise<WorkflowBundle> | null = null;

/** The test file's time-skipping environment: started before its tests, torn down after them. */
export function useDecisionEnv(): () => TestWorkflowEnvironment {
  let env: TestWorkflowEnvironment | undefined;
  beforeAll(async () => {
    env = await startDecisionEnv();
  }, 120_000);
  afterAll(async () => env?.teardown());
  return () => env!;
}

async function startDecisionEnv(): Promise<TestWorkflowEnvironment> {
  bundle ??= bundleWorkflows();
  await bundle;
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: path.join(REPO_ROOT, '.tools/bin/temporal-test-server') } },
  });
  // The search attributes the workflows set, as the dev server and the cluster have them registered.
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      Object.keys(SEARCH_ATTRIBUTES).map((name) => [
        name,
        temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
      ]),
    ),
  });
  return env;
}

const STATS = { calls: 100, errors: 0, p95LatencyMs: 50, feedback: 0, thumbsDown: 0, schemaChecked: 0, schemaValid: 0 };
const SPLIT = { key: 'datasets/m/ds-1/train.jsonl', count: 40, bytes: 4000, sha256: 'a'.repeat(64) };

/** Every call the fakes received, in order, with its input. */
export type Calls = { name: keyof AllActivities; input: unknown; attempt?: number }[];

/**
 * Activities that carry a run through every stage successfully for `config` (a model's pipeline config); a test
 * replaces the ones its decision is about. `calls` records what the workflow asked for.
 */
export function fakeActivities(config: Record<string, unknown> = {}, calls: Calls = []): Fakes {
  const plan = parsePipelineConfig({ validationShare: 0.2, minExamples: 5, ...config });
  const record =
    <K extends keyof AllActivities, R>(name: K, result: (input: Parameters<AllActivities[K]>[0]) => R) =>
    async (input: Parameters<AllActivities[K]>[0]): Promise<Awaited<R>> => {
      calls.push({ name, input });
      return await result(input);
    };
  const unused = (name: string) => async (): Promise<never> => {
    throw new Error(`${name} is not part of a pipeline run`);
  };
  return {
    startRun: record('startRun', (i) => ({ model: i.model, config: plan, watermark: 0 })),
    collect: record('collect', () => ({
      datasetId: 'ds-1',
      fromSeq: 0,
      toSeq: 50,
      interactions: 50,
      consented: 50,
      excludedNoConsent: 0,
      subjects: 10,
    })),
    anonymize: record('anonymize', () => ({
      key: 'datasets/m/ds-1/work/anonymized.jsonl',
      sha256: 'b'.repeat(64),
      bytes: 5000,
      rows: 50,
      considered: 50,
      negativeFeedback: 0,
      invalid: 0,
      corrected: 0,
      entities: {},
      engineVersion: 'test',
    })),
    synthesize: record('synthesize', (i) => ({
      rows: { ...i.anonymized, key: 'datasets/m/ds-1/work/synthesized.jsonl', rows: 60, considered: 60 },
      teacher: 'ollama:teacher',
      specs: [{ name: 'faq', hash: 'd'.repeat(64), wanted: 10, stored: 10, generated: 10, invalid: 0 }],
    })),
    score: record('score', (i) => ({
      rows: { ...i.anonymized, key: 'datasets/m/ds-1/work/scored.jsonl', rows: 45 },
      quality: {
        judge: 'ollama:judge',
        rubricSha256: 'c'.repeat(64),
        threshold: 0.7,
        judgeFiltered: true,
        why: 'the judge agrees with people at kappa 0.80 on 40 rows',
        calibration: { rows: 40, accuracy: 0.9, kappa: 0.8, precision: 0.9, recall: 0.9 },
        counts: {
          considered: 50,
          kept: 45,
          lowScore: 5,
          tooShort: 0,
          tooLong: 0,
          wrongLanguage: 0,
          byHuman: 40,
          byJudge: 10,
          judgedNow: 50,
          judgeInvalid: 0,
        },
        sources: { api: { considered: 50, kept: 45, lowScore: 5 } },
        histogram: { human: [0, 0, 0, 0, 0, 0, 5, 10, 15, 10], judge: [0, 0, 0, 0, 0, 1, 4, 10, 15, 20] },
        examples: { best: [], worst: [] },
      },
    })),
    exportDataset: record('exportDataset', () => ({
      datasetId: 'ds-1',
      manifestKey: 'datasets/m/ds-1/manifest.json',
      train: SPLIT,
      validation: { ...SPLIT, key: 'datasets/m/ds-1/validation.jsonl', count: 10 },
      counts: {
        considered: 50,
        exported: 50,
        duplicatesDropped: 0,
        negativeFeedback: 0,
        invalid: 0,
        corrected: 0,
        withdrawnDuringRun: 0,
      },
    })),
    train: record('train', () => ({
      versionId: 'v-1',
      version: 'r1',
      adapterKey: 'models/m/versions/r1/adapter/',
      totalSteps: 20,
      stepsExecuted: 20,
      attempts: 1,
      resumedFrom: null,
      metrics: { final_loss: 1.5 },
    })),
    evaluate: record('evaluate', () => ({
      candidate: { loss: 1.5, perplexity: 4.5, tokens: 100 },
      baselineName: 'production' as const,
      baseline: { loss: 1.7, perplexity: 5.5, tokens: 100 },
      pairsKey: 'runs/r/eval/pairs.jsonl',
      prompts: 10,
      answers: null,
    })),
    judge: record('judge', () => ({
      wins: 6,
      losses: 2,
      ties: 2,
      pairs: 10,
      winRate: 0.7,
      ci95: [0.4, 0.9] as [number, number],
      judge: 'judge:v1',
      disagreements: 0,
      invalid: 0,
      judgementsKey: 'runs/r/eval/judgements.jsonl',
    })),
    decideGate: record('decideGate', () => ({ passed: true, checks: [], reasons: [] })),
    register: record('register', () => ({
      tag: 'm:r1',
      method: 'adapter' as const,
      family: 'chatml',
      bytes: 1000,
      parity: { cases: 4, exact: 4, nearTie: 0, failed: 0 },
    })),
    servingState: record('servingState', () => ({ production: { versionId: 'v-0', version: 'r0' }, incumbent: false })),
    setShadow: record('setShadow', () => ({ since: '2026-12-03T00:00:00.000Z' })),
    compareShadow: record('compareShadow', () => ({
      verdict: 'pass' as const,
      reasons: [],
      pairs: 40,
      dropped: 0,
      errorRate: 0,
      latencyRatio: 1.1,
      winOrTie: { judged: 40, rate: 0.8, ci95: [0.65, 0.9] as [number, number] },
    })),
    endShadow: record('endShadow', () => undefined),
    setCanary: record('setCanary', () => ({ since: '2026-12-03T00:00:00.000Z' })),
    compareCanary: record('compareCanary', () => ({
      verdict: 'pass' as const,
      reasons: [],
      canary: STATS,
      production: STATS,
    })),
    endCanary: record('endCanary', () => undefined),
    promote: record('promote', (i) => ({
      version: 'r1',
      tag: `${i.model}:r1`,
      servedTag: `${i.model}:latest`,
      previous: { id: 'v-0', version: 'r0' },
      moved: true,
    })),
    finishRun: record('finishRun', () => undefined),
    planRollback: unused('planRollback'),
    rollback: unused('rollback'),
    rewriteErasedDatasets: unused('rewriteErasedDatasets'),
    describeGpuHost: unused('describeGpuHost'),
    volumeDue: unused('volumeDue'), // a ScheduledRun's question, never the pipeline's
  } as Fakes;
}

/**
 * Runs a TrainingPipeline to its end on the test server with `activities` (CPU and GPU on one task queue); `during`
 * drives it first (signals, updates), then time skips to the end. Returns the result, or the failure it ended with.
 */
export async function runPipeline(
  env: TestWorkflowEnvironment,
  activities: Partial<Fakes>,
  during?: (handle: PipelineHandle) => Promise<void>,
): Promise<{ result: PipelineResult | null; error: Error | null }> {
  const taskQueue = `decisions-${Math.random().toString(36).slice(2)}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await bundle!,
    activities,
    // Heartbeats (and so cancellations) reach the server at once, not every 30-60 s.
    defaultHeartbeatThrottleInterval: '20 ms',
    maxHeartbeatThrottleInterval: '20 ms',
  });
  const input: PipelineInput = {
    model: 'm',
    trigger: 'test',
    requestedBy: 'test',
    requestId: null,
    gpuTaskQueue: taskQueue,
    gpuHeartbeatTimeoutS: 120,
  };
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue,
      workflowId: `pipeline:m:${taskQueue}`,
      args: [input],
    });
    // Time skips only while the test waits for the result: what `during` does happens first, in the run's own time.
    await during?.(handle);
    try {
      return { result: (await handle.result()) as PipelineResult, error: null };
    } catch (err) {
      return { result: null, error: err as Error };
    }
  });
}

/** The outcome finishRun recorded. */
export function recordedOutcome(calls: Calls): { status: RunOutcome; error: string | null } | null {
  const f = calls.find((c) => c.name === 'finishRun')?.input as { status: RunOutcome; error: string | null };
  return f ? { status: f.status, error: f.error } : null;
}

export const names = (calls: Calls) => calls.map((c) => c.name);

export type PipelineHandle = ReturnType<TestWorkflowEnvironment['client']['workflow']['getHandle']>;

/** Polls the status query until `ready` holds (queries do not move the test server's clock). */
export async function until(handle: PipelineHandle, ready: (s: PipelineStatus) => boolean): Promise<PipelineStatus> {
  for (let i = 0; i < 400; i++) {
    const s = await handle.query(statusQuery);
    if (ready(s)) return s;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the run never got there: ${JSON.stringify(await handle.query(statusQuery))}`);
}
