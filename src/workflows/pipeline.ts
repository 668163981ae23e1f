import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AnonymizeSummary } from '../activities/anonymize';
import type { CollectSummary } from '../activities/collect';
import type { ExportSummary } from '../activities/export';
import type { EvaluateSummary } from '../activities/evaluate';
import type { RunOutcome, RunPlan } from '../activities/run';
import type { TrainSummary } from '../activities/train';
import type { GpuActivities } from '../services/worker';
import { REQUIRED_STAGES, STAGES, type StageName } from '../domain/model-config';
import {
  abortSignal,
  DEFAULT_GPU_HEARTBEAT_TIMEOUT_S,
  DEFAULT_GPU_TASK_QUEUE,
  MODEL_SEARCH_ATTRIBUTE,
  STAGE_SEARCH_ATTRIBUTE,
  statusQuery,
  type PipelineInput,
  type PipelineResult,
  type PipelineStatus,
} from './messages';

const PERMANENT = ['CONFIG_INVALID', 'MODEL_NOT_FOUND', 'DATASET_INVALID', 'GPU_OOM'];

// One proxy per timeout class, each chosen for what the work does.
/** Database bookkeeping: quick, retried through a database restart (up to half an hour of outage). */
const meta = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '30 minutes',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    nonRetryableErrorTypes: PERMANENT,
  },
});
/**
 * Streaming a dataset through local disk to the store: minutes, heartbeating per page and per upload.
 * TRY_CANCEL: an abort proceeds at once; an export still uploading finds its dataset abandoned at commit
 * and removes what it wrote.
 */
const objects = proxyActivities<Activities>({
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '2 minutes',
  cancellationType: ActivityCancellationType.TRY_CANCEL,
  retry: {
    initialInterval: '2 seconds',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 20,
    nonRetryableErrorTypes: PERMANENT,
  },
});

/**
 * Training and evaluation on the GPU host: hours, on hosts that may be preempted. A heartbeat every 10 s, so
 * (by default) two minutes of silence means the host or worker is gone and the next attempt (any GPU worker)
 * resumes from the newest checkpoint. Retries are many and slow: a preempted host comes back in minutes.
 * Cancelling waits for the trainer's last checkpoint. Queued without a GPU worker, the stage waits for one (up to
 * three days).
 */
function gpuActivities(taskQueue: string, heartbeatTimeoutS: number) {
  return proxyActivities<GpuActivities>({
    taskQueue,
    startToCloseTimeout: '24 hours',
    scheduleToCloseTimeout: '72 hours',
    heartbeatTimeout: heartbeatTimeoutS * 1000,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '10 seconds',
      backoffCoefficient: 2,
      maximumInterval: '5 minutes',
      maximumAttempts: 50,
      nonRetryableErrorTypes: PERMANENT,
    },
  });
}

/** Marks runs whose code has the train and evaluate stages (see the replay tests and tests/histories/). */
const TRAIN_STAGES_PATCH = 'train-evaluate-stages';

/** Stages whose activities do not exist yet. They are reported as skipped with this reason, never pretended. */
const NOT_BUILT: Partial<Record<StageName, string>> = {
  synthesize: 'not built yet',
  score: 'not built yet',
  register: 'not built yet',
  canary: 'not built yet',
  promote: 'not built yet',
};

/**
 * TrainingPipeline: one run of the loop for one model. It decides; activities do the I/O; only keys and small
 * summaries pass through history. Query `status` at any time; signal `abort` to stop after cleaning up;
 * cancelling the workflow cleans up the same way and ends it as cancelled.
 */
export async function TrainingPipeline(input: PipelineInput): Promise<PipelineResult> {
  const { runId, workflowId } = workflowInfo();
  const state: PipelineStatus = {
    runId,
    workflowId,
    model: input.model,
    status: 'running',
    stage: null,
    stages: STAGES.map((name) => ({
      name,
      status: 'pending',
      startedAt: null,
      endedAt: null,
      summary: null,
      reason: null,
    })),
    abortRequested: null,
  };
  let stageScope: CancellationScope | null = null;
  setHandler(statusQuery, () => state);
  setHandler(abortSignal, ({ reason, by }) => {
    state.abortRequested ??= { reason, by: by ?? null };
    stageScope?.cancel();
  });

  const report = (name: StageName) => state.stages.find((s) => s.name === name)!;
  const now = () => new Date().toISOString();
  let collected: CollectSummary | null = null;
  let anonymized: AnonymizeSummary | null = null;
  let exported: ExportSummary | null = null;
  let trained: TrainSummary | null = null;
  let evaluated: EvaluateSummary | null = null;
  const gpu = gpuActivities(
    input.gpuTaskQueue ?? DEFAULT_GPU_TASK_QUEUE,
    input.gpuHeartbeatTimeoutS ?? DEFAULT_GPU_HEARTBEAT_TIMEOUT_S,
  );

  async function runStage<T>(name: StageName, fn: () => Promise<T>, summarize: (r: T) => Record<string, unknown>) {
    const r = report(name);
    state.stage = name;
    r.status = 'running';
    r.startedAt = now();
    upsertSearchAttributes([{ key: STAGE_SEARCH_ATTRIBUTE, value: name }]);
    try {
      stageScope = new CancellationScope();
      const out = await stageScope.run(fn);
      r.status = 'succeeded';
      r.summary = summarize(out);
      return out;
    } catch (err) {
      r.status = isCancellation(err) ? 'cancelled' : 'failed';
      r.reason = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      throw err;
    } finally {
      stageScope = null;
      r.endedAt = now();
    }
  }

  function skip(name: StageName, reason: string) {
    const r = report(name);
    r.status = 'skipped';
    r.reason = reason;
  }

  async function finish(status: RunOutcome, error: string | null): Promise<PipelineResult> {
    state.stage = null;
    for (const s of state.stages) if (s.status === 'pending') s.status = 'skipped';
    for (const s of state.stages) if (s.status === 'skipped' && !s.reason) s.reason = `run ended as ${status}`;
    upsertSearchAttributes([{ key: STAGE_SEARCH_ATTRIBUTE, value: status }]);
    const dataset: PipelineResult['dataset'] = exported
      ? {
          id: exported.datasetId,
          manifestKey: exported.manifestKey,
          train: exported.train,
          validation: exported.validation,
        }
      : null;
    const version: PipelineResult['version'] = trained
      ? { id: trained.versionId, version: trained.version, adapterKey: trained.adapterKey }
      : null;
    // Bookkeeping must happen even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(() =>
      meta.finishRun({
        runId,
        model: input.model,
        status,
        stages: state.stages,
        result: {
          dataset,
          version,
          evaluation: evaluated,
          stages: state.stages.map((s) => ({ name: s.name, status: s.status })),
        },
        error,
        datasetId: collected?.datasetId ?? null,
        toSeq: collected?.toSeq ?? null,
      }),
    );
    // Only now does the status query report the outcome: a reader never sees a final status before it is recorded.
    state.status = status;
    return { ...state, dataset, version };
  }

  upsertSearchAttributes([{ key: MODEL_SEARCH_ATTRIBUTE, value: input.model }]);
  let plan: RunPlan;
  try {
    plan = await meta.startRun({
      runId,
      workflowId,
      model: input.model,
      trigger: input.trigger,
      requestedBy: input.requestedBy,
      requestId: input.requestId,
    });
  } catch (err) {
    state.status = 'failed';
    throw err;
  }

  try {
    for (const name of STAGES) {
      if (state.abortRequested) break;
      const enabled =
        (REQUIRED_STAGES as readonly StageName[]).includes(name) ||
        plan.config.stages[name as keyof typeof plan.config.stages] !== false;
      if (!enabled) {
        skip(name, 'switched off in the model config');
        continue;
      }
      const notBuilt = NOT_BUILT[name];
      if (notBuilt) {
        skip(name, notBuilt);
        continue;
      }
      // Runs that began before train and evaluate existed skipped them; a replay of such a run must too.
      if ((name === 'train' || name === 'evaluate') && !patched(TRAIN_STAGES_PATCH)) {
        skip(name, 'not built yet');
        continue;
      }
      if (name === 'collect') {
        collected = await runStage(
          'collect',
          () => meta.collect({ runId, model: input.model }),
          (c) => ({ ...c }),
        );
      } else if (name === 'anonymize') {
        const c = collected!;
        anonymized = await runStage(
          'anonymize',
          () => objects.anonymize({ runId, model: input.model, datasetId: c.datasetId }),
          (a) => ({
            key: a.key,
            rows: a.rows,
            considered: a.considered,
            entities: a.entities,
            engine: a.engineVersion,
          }),
        );
      } else if (name === 'export') {
        const c = collected!;
        const a = anonymized!;
        exported = await runStage(
          'export',
          () => objects.exportDataset({ runId, model: input.model, datasetId: c.datasetId, anonymized: a }),
          (e) => ({ manifestKey: e.manifestKey, train: e.train.count, validation: e.validation.count, ...e.counts }),
        );
        if (exported.counts.exported < plan.config.minExamples) {
          log.info('not enough examples to go on', {
            exported: exported.counts.exported,
            min: plan.config.minExamples,
          });
          return await finish('insufficient_data', null);
        }
      } else if (name === 'train') {
        const e = exported!;
        trained = await runStage(
          'train',
          () =>
            gpu.train({
              runId,
              model: input.model,
              datasetId: e.datasetId,
              train: e.train,
              validation: e.validation,
            }),
          (t) => ({
            version: t.version,
            adapterKey: t.adapterKey,
            steps: t.totalSteps,
            stepsExecuted: t.stepsExecuted,
            attempts: t.attempts,
            resumedFrom: t.resumedFrom,
            ...t.metrics,
          }),
        );
      } else if (name === 'evaluate') {
        if (!trained) {
          skip('evaluate', 'nothing was trained in this run');
          continue;
        }
        const t = trained;
        const e = exported!;
        evaluated = await runStage(
          'evaluate',
          () => gpu.evaluate({ runId, model: input.model, versionId: t.versionId, validation: e.validation }),
          (v) => ({ ...v }),
        );
      }
    }
    if (state.abortRequested) return await finish('aborted', state.abortRequested.reason);
    return await finish('succeeded', null);
  } catch (err) {
    if (isCancellation(err)) {
      if (state.abortRequested && !CancellationScope.current().consideredCancelled) {
        return await finish('aborted', state.abortRequested.reason);
      }
      await finish('cancelled', 'workflow cancelled');
      throw err;
    }
    const message = err instanceof Error ? err.message : String(err);
    await finish('failed', message);
    throw ApplicationFailure.create({
      type: 'PIPELINE_FAILED',
      message: `pipeline failed: ${message}`,
      cause: err as Error,
      nonRetryable: true,
    });
  }
}
