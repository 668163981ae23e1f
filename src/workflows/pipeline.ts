import { CancellationScope, log } from '@temporalio/workflow';
import type { PipelineConfig } from '../domain/model-config';
import { awaitApproval, runCanary } from './canary';
import { runShadow } from './shadow';
import {
  DEFAULT_GPU_HEARTBEAT_TIMEOUT_S,
  DEFAULT_GPU_TASK_QUEUE,
  type PipelineInput,
  type PipelineResult,
} from './messages';
import { PipelineRun, type StageResults } from './run-status';
import { bookkeeping, datasetIO, gpuActivities, judging, servingMoves } from './timeouts';

const NOTHING_TRAINED = 'nothing was trained in this run';
const NOTHING_REGISTERED = 'nothing was registered in this run';

/**
 * TrainingPipeline: one run of the loop for one model, stage after stage. It decides; activities do the I/O; only
 * keys and small summaries pass through history. Query `status` at any time; signal `abort` to stop after cleaning
 * up; cancelling the workflow cleans up the same way and ends it as cancelled (run-status.ts keeps the books).
 */
export async function TrainingPipeline(input: PipelineInput): Promise<PipelineResult> {
  const run = new PipelineRun(input);
  const gpu = gpuActivities(
    input.gpuTaskQueue ?? DEFAULT_GPU_TASK_QUEUE,
    input.gpuHeartbeatTimeoutS ?? DEFAULT_GPU_HEARTBEAT_TIMEOUT_S,
  );
  const { config } = await run.begin();
  const ids = { runId: run.runId, model: input.model };
  try {
    const collected = await run.stage(
      'collect',
      () => bookkeeping.collect(ids),
      (c) => ({ ...c }),
    );
    const { datasetId } = collected;
    const anonymized = await run.stage(
      'anonymize',
      () => datasetIO.anonymize({ ...ids, datasetId }),
      (a) => ({ key: a.key, rows: a.rows, considered: a.considered, entities: a.entities, engine: a.engineVersion }),
    );
    const synthesized = run.enabled('synthesize', config)
      ? await run.stage(
          'synthesize',
          () => judging.synthesize({ ...ids, datasetId, anonymized }),
          (s) => ({ key: s.rows.key, rows: s.rows.rows, teacher: s.teacher, specs: s.specs }),
        )
      : null;
    const candidates = synthesized?.rows ?? anonymized;
    const scored = run.enabled('score', config)
      ? await run.stage(
          'score',
          () => judging.score({ ...ids, datasetId, anonymized: candidates }),
          (s) => ({ key: s.rows.key, rows: s.rows.rows, ...s.quality }),
        )
      : null;
    const exported = await run.stage(
      'export',
      () => datasetIO.exportDataset({ ...ids, datasetId, anonymized: scored?.rows ?? candidates }),
      (e) => ({ manifestKey: e.manifestKey, train: e.train.count, validation: e.validation.count, ...e.counts }),
    );
    if (exported.counts.exported < config.minExamples) {
      log.info('not enough examples to go on', { exported: exported.counts.exported, min: config.minExamples });
      const n = exported.counts.exported;
      return await run.finish(
        'insufficient_data',
        `${n} new example${n === 1 ? '' : 's'} since the last successful run, fewer than the model's minimum of ${config.minExamples}`,
      );
    }

    const split = { train: exported.train, validation: exported.validation };
    const trained = run.enabled('train', config)
      ? await run.stage('train', () => gpu.train({ ...ids, datasetId: exported.datasetId, ...split }), summarizeTrain)
      : null;
    if (!trained) {
      const reasons = { evaluate: NOTHING_TRAINED, register: NOTHING_TRAINED };
      const later = { shadow: NOTHING_REGISTERED, canary: NOTHING_REGISTERED, promote: NOTHING_REGISTERED };
      return await run.succeedWithout({ ...reasons, ...later }, config);
    }
    const candidate = { ...ids, versionId: trained.versionId };

    if (run.enabled('evaluate', config)) {
      const evaluation = await run.stage(
        'evaluate',
        () => evaluate(candidate, exported.validation, config),
        (v) => ({ ...v }),
      );
      if (!evaluation.gate.passed) {
        log.info('candidate rejected at the gate', { reasons: evaluation.gate.reasons });
        return await run.finish('rejected', `candidate rejected: ${evaluation.gate.reasons.join('; ')}`);
      }
    }

    const registered = run.enabled('register', config)
      ? await run.stage(
          'register',
          () => gpu.register({ ...candidate, ...split }),
          (r) => ({ ...r }),
        )
      : null;
    if (!registered) {
      const reasons = { shadow: NOTHING_REGISTERED, canary: NOTHING_REGISTERED, promote: NOTHING_REGISTERED };
      return await run.succeedWithout(reasons, config);
    }

    if (run.enabled('shadow', config)) {
      const shadow = await run.step(
        'shadow',
        () => runShadow(run, config.shadow, candidate.versionId),
        (s) => ({ ...s }),
      );
      if (shadow.outcome === 'rolled_back') return await run.finish('rolled_back', shadow.reasons.join('; '));
    }

    if (run.enabled('canary', config)) {
      const canary = await run.step(
        'canary',
        () => runCanary(run, config.canary, candidate.versionId),
        (c) => ({ ...c }),
      );
      if (canary.outcome === 'rolled_back') return await run.finish('rolled_back', canary.reasons.join('; '));
    }

    if (run.enabled('promote', config)) {
      if (config.canary.requireApproval && run.report('canary').status !== 'succeeded') {
        // No canary stage: the approval the model asks for still comes before production.
        const approval = await run.step(
          'promote',
          () => awaitApproval(run, config.canary, candidate.versionId),
          (a) => ({ ...a }),
        );
        if (!approval.approved) return await run.finish('rolled_back', approval.reason);
      }
      // Once it starts, a promotion finishes and the run records it, even if the run is aborted meanwhile.
      await run.stage(
        'promote',
        () => CancellationScope.nonCancellable(() => servingMoves.promote(candidate)),
        (p) => ({ ...p }),
      );
    }
    return await run.complete();
  } catch (err) {
    return await run.fail(err);
  }

  /** The evaluate stage: held-out metrics and generations on the GPU host, the judge when configured, the gate. */
  async function evaluate(
    c: { runId: string; model: string; versionId: string },
    validation: StageResults['export']['validation'],
    cfg: PipelineConfig,
  ): Promise<StageResults['evaluate']> {
    const ev = await gpu.evaluate({ ...c, validation });
    const judged =
      cfg.judge && ev.pairsKey
        ? await judging.judge({ ...c, pairsKey: ev.pairsKey, baselineName: ev.baselineName })
        : null;
    const gate = await bookkeeping.decideGate({ ...c, evaluation: ev, judge: judged });
    return { ...ev, judge: judged, gate };
  }
}

const summarizeTrain = (t: StageResults['train']) => ({
  version: t.version,
  adapterKey: t.adapterKey,
  steps: t.totalSteps,
  stepsExecuted: t.stepsExecuted,
  attempts: t.attempts,
  resumedFrom: t.resumedFrom,
  ...(t.startedFrom !== undefined ? { startedFrom: t.startedFrom } : {}),
  ...t.metrics,
});
