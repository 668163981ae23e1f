import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { PipelineStatusValue } from '../domain/failures';
import type { StageName } from '../domain/model-config';

// Messages of the TrainingPipeline workflow, shared by the workflow, the API, the CLI and tests.

export const WORKFLOW_TYPE = 'TrainingPipeline';

/** One pipeline per model at a time: concurrent requests converge on the running one. */
export const pipelineWorkflowId = (model: string) => `pipeline:${model}`;

export const MODEL_SEARCH_ATTRIBUTE = defineSearchAttributeKey('TuneloopModel', SearchAttributeType.KEYWORD);
export const STAGE_SEARCH_ATTRIBUTE = defineSearchAttributeKey('TuneloopStage', SearchAttributeType.KEYWORD);
/** How a run ended (succeeded, rejected, rolled_back, insufficient_data…): set once, when it ends. */
export const OUTCOME_SEARCH_ATTRIBUTE = defineSearchAttributeKey('TuneloopOutcome', SearchAttributeType.KEYWORD);

export interface PipelineInput {
  model: string;
  trigger: 'api' | 'cli' | 'schedule' | 'test';
  requestedBy: string | null;
  /** Unique per start request; lets a caller tell whether it started the run or joined a running one. */
  requestId: string | null;
  /** The GPU worker's task queue (train, evaluate); DEFAULT_GPU_TASK_QUEUE when absent. */
  gpuTaskQueue?: string;
  /**
   * Seconds of silence from a training GPU host before its attempt is given up and retried elsewhere (from the
   * newest checkpoint); DEFAULT_GPU_HEARTBEAT_TIMEOUT_S when absent.
   */
  gpuHeartbeatTimeoutS?: number;
}

export const DEFAULT_GPU_HEARTBEAT_TIMEOUT_S = 120;

export const DEFAULT_GPU_TASK_QUEUE = 'tuneloop-gpu';

export type StageStatus = 'pending' | 'running' | 'succeeded' | 'skipped' | 'failed' | 'cancelled';

export interface StageReport {
  name: StageName;
  status: StageStatus;
  startedAt: string | null;
  endedAt: string | null;
  /** A small JSON summary (counts, keys); never data. */
  summary: Record<string, unknown> | null;
  /** Why a stage was skipped, failed or cancelled. */
  reason: string | null;
}

export { PIPELINE_STATUSES, type PipelineStatusValue } from '../domain/failures';

/** Where the canary stage stands, for the status query and the Temporal UI. */
export interface CanaryState {
  versionId: string;
  percent: number;
  since: string;
  /** Waiting for an operator's approval before 100 %. */
  awaitingApproval: boolean;
  approval: { approved: boolean; by: string; reason: string | null } | null;
  last: { verdict: string; reasons: string[] } | null;
}

export interface PipelineStatus {
  runId: string;
  workflowId: string;
  model: string;
  status: PipelineStatusValue;
  stage: StageName | null;
  stages: StageReport[];
  abortRequested: { reason: string; by: string | null } | null;
  canary: CanaryState | null;
}

export interface PipelineResult extends PipelineStatus {
  dataset: {
    id: string;
    manifestKey: string;
    train: { key: string; count: number; bytes: number; sha256: string };
    validation: { key: string; count: number; bytes: number; sha256: string };
  } | null;
  /** The model version this run trained, when it got that far. */
  version: { id: string; version: string; adapterKey: string } | null;
}

export interface ApprovalInput {
  approved: boolean;
  by: string;
  reason?: string | null;
}

export const statusQuery = defineQuery<PipelineStatus>('status');
export const abortSignal = defineSignal<[{ reason: string; by?: string | null }]>('abort');
/**
 * An operator's answer to a canary that waits for approval before 100 %. Refused (the validator throws) unless the
 * run is waiting for it; answers with the run's canary state.
 */
export const approveUpdate = defineUpdate<CanaryState, [ApprovalInput]>('approve');

export const ROLLBACK_WORKFLOW_TYPE = 'RollbackModel';
/** One rollback of a model at a time; a second request while one runs joins it. */
export const rollbackWorkflowId = (model: string) => `rollback:${model}`;

export const ERASURE_WORKFLOW_TYPE = 'EraseSubject';
/** One erasure workflow per erasure record; starting it twice joins the first. */
export const erasureWorkflowId = (erasureId: string) => `erasure:${erasureId}`;

export const SCHEDULED_RUN_WORKFLOW_TYPE = 'ScheduledRun';
export const VOLUME_RUN_WORKFLOW_TYPE = 'VolumeRun';

/** The model's nightly schedule (one per model). */
export const scheduleId = (model: string) => `nightly/${model}`;
/** The schedule that checks, every few minutes, whether enough new examples have arrived to run now. */
export const volumeScheduleId = (model: string) => `volume/${model}`;

/**
 * Run as soon as `minExamples` consented examples no run has looked at yet have arrived (after the watermark and
 * after every range a run collected), at most once every `minIntervalMinutes`.
 */
export interface VolumeTrigger {
  minExamples: number;
  minIntervalMinutes: number;
}

export interface ScheduledRunInput {
  model: string;
  /** The schedule that started it: who asked, in the run's record. */
  schedule: string;
  gpuTaskQueue?: string;
  gpuHeartbeatTimeoutS?: number;
}

/** What the `volume/<model>` schedule starts: the pipeline only when the check says it is due. */
export interface VolumeRunInput extends ScheduledRunInput {
  volume: VolumeTrigger;
}

export interface ScheduledRunResult {
  /**
   * The pipeline run it started and waited for; null when one of the model's runs was going already, or a volume
   * check found too few new examples or the last run too recent (`reason` says which).
   */
  runId: string | null;
  status: PipelineStatusValue | 'skipped';
  reason: string | null;
}
