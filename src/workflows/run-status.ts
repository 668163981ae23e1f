import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  isCancellation,
  log,
  patched,
  setHandler,
  setCurrentDetails,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { AnonymizeSummary } from '../activities/anonymize';
import type { CollectSummary } from '../activities/collect';
import type { EvaluateSummary } from '../activities/evaluate';
import type { ExportSummary } from '../activities/export';
import type { JudgeSummary } from '../activities/judge';
import type { PromoteResult } from '../activities/promote';
import type { RegisterSummary } from '../activities/register';
import type { RunPlan } from '../activities/run';
import type { ScoreSummary } from '../activities/score';
import type { SynthesizeSummary } from '../activities/synthesize';
import type { TrainSummary } from '../activities/train';
import type { RunOutcome } from '../domain/failures';
import type { GateResult } from '../domain/evaluation';
import { REQUIRED_STAGES, STAGES, type PipelineConfig, type StageName } from '../domain/model-config';
import {
  abortSignal,
  approveUpdate,
  MODEL_SEARCH_ATTRIBUTE,
  OUTCOME_SEARCH_ATTRIBUTE,
  STAGE_SEARCH_ATTRIBUTE,
  statusQuery,
  type PipelineInput,
  type PipelineResult,
  type PipelineStatus,
  type StageReport,
} from './messages';
import { bookkeeping, servingMoves } from './timeouts';

/** What each stage hands to the ones after it. */
export interface StageResults {
  collect: CollectSummary;
  anonymize: AnonymizeSummary;
  synthesize: SynthesizeSummary;
  score: ScoreSummary;
  export: ExportSummary;
  train: TrainSummary;
  evaluate: EvaluateSummary & { judge: JudgeSummary | null; gate: GateResult };
  register: RegisterSummary;
  promote: PromoteResult;
}

/** Marks runs whose code has the train and evaluate stages (see the replay tests and tests/histories/). */
const TRAIN_STAGES_PATCH = 'train-evaluate-stages';

/** Marks runs whose code has the shadow stage (older histories replay with it skipped). */
const SHADOW_STAGE_PATCH = 'shadow-stage';

/** Marks runs that record their outcome in the TuneloopOutcome search attribute. */
const OUTCOME_PATCH = 'outcome-search-attribute';

/** Marks runs whose code has the score stage (older histories replay with it skipped). */
const SCORE_STAGE_PATCH = 'score-stage';

/** Marks runs whose code has the synthesize stage (older histories replay with it skipped). */
const SYNTHESIZE_STAGE_PATCH = 'synthesize-stage';

/** Stages whose activities do not exist yet. They are reported as skipped with this reason, never pretended. */
const NOT_BUILT: Partial<Record<StageName, string>> = {};

/** Stages that run only with their own config, and their patch (runs begun before they existed skip them). */
const CONFIGURED_STAGES: Partial<Record<StageName, { key: 'score' | 'synthesize'; patch: string }>> = {
  synthesize: { key: 'synthesize', patch: SYNTHESIZE_STAGE_PATCH },
  score: { key: 'score', patch: SCORE_STAGE_PATCH },
};

/** An operator's abort, seen between two stages. */
class RunAborted extends Error {}

/**
 * A pipeline run's bookkeeping: its status (what the `status` query answers and the Temporal UI's search attributes
 * show), the `abort` signal and `approve` update, each stage's report and result, and how the run ends. The pipeline
 * itself only says which stage comes next.
 */
export class PipelineRun {
  readonly runId: string;
  readonly workflowId: string;
  readonly state: PipelineStatus;
  private readonly results: Partial<StageResults> = {};
  private scope: CancellationScope | null = null;

  constructor(readonly input: PipelineInput) {
    ({ runId: this.runId, workflowId: this.workflowId } = workflowInfo());
    this.state = {
      runId: this.runId,
      workflowId: this.workflowId,
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
    setHandler(statusQuery, () => this.state);
    setHandler(abortSignal, ({ reason, by }) => {
      this.state.abortRequested ??= { reason, by: by ?? null };
      this.scope?.cancel();
    });
    setHandler(
      approveUpdate,
      (approval) => {
        const canary = this.state.canary!; // the validator let it through: a canary waits
        canary.approval = { approved: approval.approved, by: approval.by, reason: approval.reason ?? null };
        return canary;
      },
      {
        validator: (approval) => {
          if (!this.state.canary?.awaitingApproval || this.state.canary.approval) {
            throw new Error('this run is not waiting for an approval');
          }
          if (typeof approval?.approved !== 'boolean' || typeof approval.by !== 'string' || !approval.by) {
            throw new Error('approval needs approved (true or false) and by');
          }
        },
      },
    );
  }

  /** Records the run and returns the model's config as this run will use it. */
  async begin(): Promise<RunPlan> {
    upsertSearchAttributes([{ key: MODEL_SEARCH_ATTRIBUTE, value: this.input.model }]);
    try {
      return await bookkeeping.startRun({
        runId: this.runId,
        workflowId: this.workflowId,
        model: this.input.model,
        trigger: this.input.trigger,
        requestedBy: this.input.requestedBy,
        requestId: this.input.requestId,
      });
    } catch (err) {
      this.state.status = 'failed';
      throw err;
    }
  }

  report(name: StageName): StageReport {
    return this.state.stages.find((s) => s.name === name)!;
  }

  /**
   * Whether an optional stage runs: a stage switched off in the model's config, or not built yet, is reported as
   * skipped with the reason. Runs that began before train and evaluate existed skipped them; a replay of such a run
   * must too.
   */
  enabled(name: StageName, config: PipelineConfig): boolean {
    this.assertNotAborted();
    const required = (REQUIRED_STAGES as readonly StageName[]).includes(name);
    if (!required && config.stages[name as keyof PipelineConfig['stages']] === false) {
      this.skip(name, 'switched off in the model config');
      return false;
    }
    const notBuilt = NOT_BUILT[name];
    if (notBuilt) {
      this.skip(name, notBuilt);
      return false;
    }
    const configured = CONFIGURED_STAGES[name];
    if (configured) {
      if (!config[configured.key]) {
        this.skip(
          name,
          configured.key === 'score'
            ? 'no score config: rows go to export unscored'
            : 'no synthesize config: no synthetic rows',
        );
        return false;
      }
      if (!patched(configured.patch)) {
        this.skip(name, 'not built yet');
        return false;
      }
    }
    if (name === 'shadow') {
      // On by default only where there is a hosted incumbent to shadow; a model may switch it on for local production.
      if (config.stages.shadow === undefined && !config.incumbent) {
        this.skip(
          name,
          'no incumbent: the candidate meets production in the canary (stages.shadow: true to shadow it)',
        );
        return false;
      }
      if (!patched(SHADOW_STAGE_PATCH)) {
        this.skip(name, 'not built yet');
        return false;
      }
    }
    if ((name === 'train' || name === 'evaluate') && !patched(TRAIN_STAGES_PATCH)) {
      this.skip(name, 'not built yet');
      return false;
    }
    return true;
  }

  /** Runs a stage and keeps what it hands on; an abort cancels it. */
  async stage<K extends keyof StageResults>(
    name: K,
    fn: () => Promise<StageResults[K]>,
    summarize: (r: StageResults[K]) => Record<string, unknown>,
  ): Promise<StageResults[K]> {
    const out = await this.step(name, fn, summarize);
    this.results[name] = out;
    return out;
  }

  /** Runs a piece of a stage under its report (the approval before a promotion without a canary). */
  async step<T>(name: StageName, fn: () => Promise<T>, summarize: (r: T) => Record<string, unknown>): Promise<T> {
    this.assertNotAborted();
    const r = this.report(name);
    this.state.stage = name;
    r.status = 'running';
    r.startedAt = now();
    upsertSearchAttributes([{ key: STAGE_SEARCH_ATTRIBUTE, value: name }]);
    setCurrentDetails(`stage **${name}** since ${r.startedAt}`);
    try {
      this.scope = new CancellationScope();
      const out = await this.scope.run(fn);
      r.status = 'succeeded';
      r.summary = summarize(out);
      return out;
    } catch (err) {
      r.status = isCancellation(err) ? 'cancelled' : 'failed';
      r.reason = failureMessage(err);
      throw err;
    } finally {
      this.scope = null;
      r.endedAt = now();
    }
  }

  skip(name: StageName, reason: string): void {
    const r = this.report(name);
    r.status = 'skipped';
    r.reason = reason;
  }

  /** Ends a run that has nothing for the stages left: each is skipped with its reason, and the run succeeds. */
  async succeedWithout(reasons: Partial<Record<StageName, string>>, config: PipelineConfig): Promise<PipelineResult> {
    for (const [name, reason] of Object.entries(reasons) as [StageName, string][]) {
      if (this.enabled(name, config)) this.skip(name, reason);
    }
    return this.finish('succeeded', null);
  }

  /** The end of a run that got to the end of its stages (an abort during the last one still ends it aborted). */
  async complete(): Promise<PipelineResult> {
    const abort = this.state.abortRequested;
    return abort ? this.finish('aborted', abort.reason) : this.finish('succeeded', null);
  }

  /**
   * How a run that threw ends: an abort ends it `aborted`; a cancellation of the workflow `cancelled` (and the
   * cancellation goes on); anything else `failed`, as a non-retryable PIPELINE_FAILED.
   */
  async fail(err: unknown): Promise<PipelineResult> {
    const abort = this.state.abortRequested;
    if (err instanceof RunAborted) return this.finish('aborted', abort!.reason);
    if (isCancellation(err)) {
      if (abort && !CancellationScope.current().consideredCancelled) return this.finish('aborted', abort.reason);
      await this.finish('cancelled', 'workflow cancelled');
      throw err;
    }
    const message = failureMessage(err);
    await this.finish('failed', message);
    throw ApplicationFailure.create({
      type: 'PIPELINE_FAILED',
      message: `pipeline failed: ${message}`,
      cause: err as Error,
      nonRetryable: true,
    });
  }

  /** Closes the run: takes out a canary it left, records the outcome, and only then reports it. */
  async finish(status: RunOutcome, error: string | null): Promise<PipelineResult> {
    const { collect, export: exported, train, evaluate, register, promote } = this.results;
    // A canary left behind by a run that did not succeed is taken out: its subjects go back to production. Asked
    // whenever this run registered a version it did not promote (a canary step may have been set just as the run
    // was aborted); endCanary acts only if the alias points at this version. Its failure must not keep the run
    // from being recorded.
    if (train && register && !promote && status !== 'succeeded') {
      try {
        await CancellationScope.nonCancellable(() =>
          servingMoves.endCanary({
            runId: this.runId,
            model: this.input.model,
            versionId: train.versionId,
            reason: `run ended as ${status}${error ? `: ${error}` : ''}`,
          }),
        );
      } catch (err) {
        log.warn('could not take the canary out', { error: err instanceof Error ? err.message : String(err) });
      }
    }
    this.state.stage = null;
    for (const s of this.state.stages) if (s.status === 'pending') s.status = 'skipped';
    for (const s of this.state.stages) if (s.status === 'skipped' && !s.reason) s.reason = `run ended as ${status}`;
    // The outcome as a column of its own (a rejected run is "Completed" to Temporal, as a promotion is); in the same
    // upsert, so histories from before it replay unchanged.
    upsertSearchAttributes([
      { key: STAGE_SEARCH_ATTRIBUTE, value: status },
      ...(patched(OUTCOME_PATCH) ? [{ key: OUTCOME_SEARCH_ATTRIBUTE, value: status }] : []),
    ]);
    setCurrentDetails(`**${status}**${error ? ` — ${error}` : ''} (ended ${now()})`);
    const dataset: PipelineResult['dataset'] = exported
      ? {
          id: exported.datasetId,
          manifestKey: exported.manifestKey,
          train: exported.train,
          validation: exported.validation,
        }
      : null;
    const version: PipelineResult['version'] = train
      ? { id: train.versionId, version: train.version, adapterKey: train.adapterKey }
      : null;
    // Bookkeeping must happen even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(() =>
      bookkeeping.finishRun({
        runId: this.runId,
        model: this.input.model,
        status,
        stages: this.state.stages,
        result: {
          dataset,
          version,
          evaluation: evaluate ?? null,
          registered: register ?? null,
          promoted: promote ?? null,
          stages: this.state.stages.map((s) => ({ name: s.name, status: s.status })),
        },
        error,
        datasetId: collect?.datasetId ?? null,
        toSeq: collect?.toSeq ?? null,
      }),
    );
    // Only now does the status query report the outcome: a reader never sees a final status before it is recorded.
    this.state.status = status;
    return { ...this.state, dataset, version };
  }

  private assertNotAborted(): void {
    if (this.state.abortRequested) throw new RunAborted('aborted');
  }
}

const now = () => new Date().toISOString();

/** What went wrong, in words: an activity's or a child's own failure, not its wrapper's "Activity task failed". */
export function failureMessage(err: unknown): string {
  // The innermost words win; a cause with none of its own says less than the wrapper nearest to it.
  let message = err instanceof Error ? err.message : String(err);
  let e = err;
  while ((e instanceof ActivityFailure || e instanceof ChildWorkflowFailure) && e.cause) {
    e = e.cause;
    if (e instanceof Error && e.message) message = e.message;
    else if (e instanceof ApplicationFailure && e.type) message = e.type;
  }
  return message || 'failed with no message';
}
