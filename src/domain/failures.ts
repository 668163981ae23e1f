// Failure types and run outcomes: one vocabulary for activities (which fail with these types), workflows (which
// decide what is retried and how a run ends) and the API (which reports them). Pure values: workflow code imports it.

/** The failure types a stage can end with. Permanent ones are never retried: retrying cannot fix them. */
export const FailureType = {
  CONFIG_INVALID: 'CONFIG_INVALID',
  MODEL_NOT_FOUND: 'MODEL_NOT_FOUND',
  DATASET_INVALID: 'DATASET_INVALID',
  STORE_INTEGRITY: 'STORE_INTEGRITY',
  /** Data changed under a stage (an erasure during export); the retry sees the new state. */
  DATASET_CONFLICT: 'DATASET_CONFLICT',
  /** Another trainer holds the run's lock (a twin); retried until it lets go. */
  RUN_LOCKED: 'RUN_LOCKED',
  /** The trainer crashed or was killed; the retry resumes from the newest checkpoint. */
  TRAINER_CRASHED: 'TRAINER_CRASHED',
  /** The trainer was stopped by a signal that was not our cancellation (host preemption); it checkpointed first. */
  TRAINER_INTERRUPTED: 'TRAINER_INTERRUPTED',
  /** Out of GPU memory: the same config on the same host fails the same way; lower microBatchSize or maxLength. */
  GPU_OOM: 'GPU_OOM',
  /** Ollama's greedy answers are not the trainer's: a wrong chat template, stop tokens or import. */
  PARITY_MISMATCH: 'PARITY_MISMATCH',
  /** Ollama did not answer or answered 5xx; retried (a restarted Ollama serves again). */
  OLLAMA_UNAVAILABLE: 'OLLAMA_UNAVAILABLE',
  /** The model or version a stage needs to act on is not in a state that allows it (e.g. nothing to roll back to). */
  INVALID_STATE: 'INVALID_STATE',
  /** A judge (an Ollama model or the hosted incumbent) did not answer; retried, and what it judged is kept. */
  JUDGE_UNAVAILABLE: 'JUDGE_UNAVAILABLE',
  /** The synthesize stage's teacher did not answer; retried, and what it wrote is kept. */
  TEACHER_UNAVAILABLE: 'TEACHER_UNAVAILABLE',
  /** The worker process that ran an attempt died (see temporal/attempt-journal.ts); the retry starts at once. */
  WORKER_LOST: 'WORKER_LOST',
} as const;
export type FailureType = (typeof FailureType)[keyof typeof FailureType];

/** The failure types no retry can fix: activities throw them non-retryable, and every retry policy names them. */
export const PERMANENT_FAILURES: readonly FailureType[] = [
  FailureType.CONFIG_INVALID,
  FailureType.MODEL_NOT_FOUND,
  FailureType.DATASET_INVALID,
  FailureType.GPU_OOM,
  FailureType.PARITY_MISMATCH,
  FailureType.INVALID_STATE,
];

/**
 * How a run ends. Only `succeeded` moves the watermark: after `rejected` (the gate said no) or `rolled_back`
 * (the canary was worse) the same interactions go into the next run again, with whatever arrived since.
 */
export const RUN_OUTCOMES = [
  'succeeded',
  'insufficient_data',
  'rejected',
  'rolled_back',
  'failed',
  'aborted',
  'cancelled',
] as const;
export type RunOutcome = (typeof RUN_OUTCOMES)[number];

/** A run's status: running, then its outcome. */
export type PipelineStatusValue = 'running' | RunOutcome;
export const PIPELINE_STATUSES: readonly PipelineStatusValue[] = ['running', ...RUN_OUTCOMES];
