import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AnonymizeSummary } from '../activities/anonymize';
import type { CollectSummary } from '../activities/collect';
import type { ExportSummary } from '../activities/export';
import type { EvaluateSummary } from '../activities/evaluate';
import type { JudgeSummary } from '../activities/judge';
import type { PromoteResult } from '../activities/promote';
import type { RegisterSummary } from '../activities/register';
import type { GateResult } from '../domain/evaluation';
import type { RunOutcome, RunPlan } from '../activities/run';
import type { TrainSummary } from '../activities/train';
import type { GpuActivities } from '../services/worker';
import { PERMANENT, SERVING } from './activity-options';
import { REQUIRED_STAGES, STAGES, type StageName } from '../domain/model-config';
import {
  abortSignal,
  approveUpdate,
  DEFAULT_GPU_HEARTBEAT_TIMEOUT_S,
  DEFAULT_GPU_TASK_QUEUE,
  MODEL_SEARCH_ATTRIBUTE,
  STAGE_SEARCH_ATTRIBUTE,
  statusQuery,
  type PipelineInput,
  type PipelineResult,
  type PipelineStatus,
} from './messages';

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

/** Registry moves and Ollama tag copies (canary steps, promotion): see SERVING. */
const serving = proxyActivities<Activities>(SERVING);
/** The judge asks Ollama a few hundred questions: minutes, with a heartbeat. */
const judging = proxyActivities<Activities>({
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '5 minutes',
  retry: {
    initialInterval: '5 seconds',
    backoffCoefficient: 2,
    maximumInterval: '2 minutes',
    maximumAttempts: 10,
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
    canary: null,
  };
  let stageScope: CancellationScope | null = null;
  setHandler(statusQuery, () => state);
  setHandler(abortSignal, ({ reason, by }) => {
    state.abortRequested ??= { reason, by: by ?? null };
    stageScope?.cancel();
  });
  setHandler(
    approveUpdate,
    (approval) => {
      state.canary!.approval = { approved: approval.approved, by: approval.by, reason: approval.reason ?? null };
      return state.canary!;
    },
    {
      validator: (approval) => {
        if (!state.canary?.awaitingApproval || state.canary.approval) {
          throw new Error('this run is not waiting for an approval');
        }
        if (typeof approval?.approved !== 'boolean' || typeof approval.by !== 'string' || !approval.by) {
          throw new Error('approval needs approved (true or false) and by');
        }
      },
    },
  );

  const report = (name: StageName) => state.stages.find((s) => s.name === name)!;
  const now = () => new Date().toISOString();
  let collected: CollectSummary | null = null;
  let anonymized: AnonymizeSummary | null = null;
  let exported: ExportSummary | null = null;
  let trained: TrainSummary | null = null;
  let evaluated: EvaluateSummary | null = null;
  let registered: RegisterSummary | null = null;
  let promoted: PromoteResult | null = null;
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
    // A canary left behind by a run that did not succeed is taken out: its subjects go back to production. Asked
    // whenever this run registered a version it did not promote (a canary step may have been set just as the run
    // was aborted); endCanary acts only if the alias points at this version. Its failure must not keep the run
    // from being recorded.
    if (trained && registered && !promoted && status !== 'succeeded') {
      const versionId = trained.versionId;
      try {
        await CancellationScope.nonCancellable(() =>
          serving.endCanary({
            runId,
            model: input.model,
            versionId,
            reason: `run ended as ${status}${error ? `: ${error}` : ''}`,
          }),
        );
      } catch (err) {
        log.warn('could not take the canary out', { error: err instanceof Error ? err.message : String(err) });
      }
    }
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
          registered,
          promoted,
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

  /**
   * The canary stage: the version's share grows step by step (durable timers hold each step); after each hold
   * the canary is compared with production over the step's window, and a worse canary is rolled back at once.
   * Too little traffic extends the hold, then `insufficientTraffic` decides. The last step (100 %) is the
   * promotion, after an operator's approval when the model asks for one.
   */
  async function runCanary(
    versionId: string,
  ): Promise<{ outcome: 'passed' | 'rolled_back'; reasons: string[]; steps: number[] }> {
    const c = plan.config.canary;
    const done: number[] = [];
    const rollback = async (reason: string) => {
      await serving.endCanary({ runId, model: input.model, versionId, reason });
      state.canary = null;
      return { outcome: 'rolled_back' as const, reasons: [reason], steps: done };
    };
    // The first version has nothing to be compared with, and the API has nothing to serve the other subjects
    // with: it goes to production after the approval (if asked for) without traffic steps.
    const { production } = await serving.servingState({ model: input.model });
    const steps = production ? c.steps : [];
    for (const percent of steps) {
      if (percent === 100) break;
      const { since } = await serving.setCanary({ runId, model: input.model, versionId, percent });
      state.canary = { versionId, percent, since, awaitingApproval: false, approval: null, last: null };
      for (let extension = 0; ; extension++) {
        await sleep(c.holdSeconds * 1000);
        const v = await serving.compareCanary({ runId, model: input.model, versionId, since });
        state.canary.last = { verdict: v.verdict, reasons: v.reasons };
        if (v.verdict === 'fail')
          return rollback(`canary worse than production at ${percent} %: ${v.reasons.join('; ')}`);
        if (v.verdict === 'pass') break;
        if (extension >= c.maxExtensions) {
          if (c.insufficientTraffic === 'rollback') {
            return rollback(`too little canary traffic at ${percent} %: ${v.reasons.join('; ')}`);
          }
          log.warn('too little canary traffic; proceeding as configured', { percent, reasons: v.reasons });
          break;
        }
      }
      done.push(percent);
    }
    if (c.requireApproval) {
      const approval = await awaitApproval(versionId);
      if (!approval.approved) return rollback(approval.reason);
    }
    return {
      outcome: 'passed',
      reasons: production ? [] : ['no production version yet: nothing to compare with, no traffic steps'],
      steps: done,
    };
  }

  /** Waits for an operator's `approve` update (or its timeout); the status query shows the wait. */
  async function awaitApproval(versionId: string): Promise<{ approved: boolean; reason: string }> {
    const c = plan.config.canary;
    const canary = (state.canary ??= {
      versionId,
      percent: 0,
      since: new Date().toISOString(),
      awaitingApproval: false,
      approval: null,
      last: null,
    });
    canary.awaitingApproval = true;
    const stage = state.stage ?? 'canary';
    upsertSearchAttributes([{ key: STAGE_SEARCH_ATTRIBUTE, value: `${stage}:awaiting-approval` }]);
    const answered = await condition(() => canary.approval !== null, c.approvalTimeoutHours * 3600 * 1000);
    canary.awaitingApproval = false;
    upsertSearchAttributes([{ key: STAGE_SEARCH_ATTRIBUTE, value: stage }]);
    if (!answered) return { approved: false, reason: `no approval within ${c.approvalTimeoutHours} h` };
    const a = canary.approval!;
    return a.approved
      ? { approved: true, reason: `approved by ${a.by}` }
      : { approved: false, reason: `declined by ${a.by}${a.reason ? `: ${a.reason}` : ''}` };
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
        let verdict: GateResult | null = null;
        evaluated = await runStage(
          'evaluate',
          async () => {
            const ev = await gpu.evaluate({
              runId,
              model: input.model,
              versionId: t.versionId,
              validation: e.validation,
            });
            let judged: JudgeSummary | null = null;
            if (plan.config.judge && ev.pairsKey) {
              judged = await judging.judge({
                runId,
                model: input.model,
                versionId: t.versionId,
                pairsKey: ev.pairsKey,
                baselineName: ev.baselineName,
              });
            }
            verdict = await meta.decideGate({
              runId,
              model: input.model,
              versionId: t.versionId,
              evaluation: ev,
              judge: judged,
            });
            return { ...ev, judge: judged, gate: verdict };
          },
          (v) => ({ ...v }),
        );
        const g = verdict as GateResult | null;
        if (g && !g.passed) {
          log.info('candidate rejected at the gate', { reasons: g.reasons });
          return await finish('rejected', `candidate rejected: ${g.reasons.join('; ')}`);
        }
      } else if (name === 'register') {
        if (!trained) {
          skip('register', 'nothing was trained in this run');
          continue;
        }
        const t = trained;
        const e = exported!;
        registered = await runStage(
          'register',
          () =>
            gpu.register({
              runId,
              model: input.model,
              versionId: t.versionId,
              validation: e.validation,
              train: e.train,
            }),
          (r) => ({ ...r }),
        );
      } else if (name === 'canary') {
        if (!registered) {
          skip('canary', 'nothing was registered in this run');
          continue;
        }
        const versionId = trained!.versionId;
        const outcome = await runStage(
          'canary',
          () => runCanary(versionId),
          (c) => ({ ...c }),
        );
        if (outcome.outcome === 'rolled_back') return await finish('rolled_back', outcome.reasons.join('; '));
      } else if (name === 'promote') {
        if (!registered) {
          skip('promote', 'nothing was registered in this run');
          continue;
        }
        const versionId = trained!.versionId;
        const canaryRan = report('canary').status === 'succeeded';
        if (plan.config.canary.requireApproval && !canaryRan) {
          // No canary stage: the approval the model asks for still comes before production.
          const approval = await runStage(
            'promote',
            () => awaitApproval(versionId),
            (a) => ({ ...a }),
          );
          if (!approval.approved) return await finish('rolled_back', approval.reason);
        }
        // Once it starts, a promotion finishes and the run records it, even if the run is aborted meanwhile.
        promoted = await runStage(
          'promote',
          () => CancellationScope.nonCancellable(() => serving.promote({ runId, model: input.model, versionId })),
          (p) => ({ ...p }),
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
