import { ApplicationFailure } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from '@temporalio/worker';
import { ZodError } from 'zod';
import { OllamaError } from '../llm/ollama';

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
} as const;
export type FailureType = (typeof FailureType)[keyof typeof FailureType];

export const PERMANENT_FAILURES: readonly FailureType[] = [
  FailureType.CONFIG_INVALID,
  FailureType.MODEL_NOT_FOUND,
  FailureType.DATASET_INVALID,
  FailureType.GPU_OOM,
  FailureType.PARITY_MISMATCH,
  FailureType.INVALID_STATE,
];

export function permanentFailure(type: FailureType, message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: details ? [details] : [] });
}

export function retryableFailure(type: FailureType, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: false });
}

/**
 * Classifies third-party errors in one place rather than in scattered try/catch: a zod error inside an
 * activity means stored data or config is invalid, which no retry will change. Everything else (network,
 * database restarts) stays retryable.
 */
export class ClassifyFailuresInterceptor implements ActivityInboundCallsInterceptor {
  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    try {
      return await next(input);
    } catch (err) {
      if (err instanceof ZodError) {
        const first = err.issues[0];
        throw permanentFailure(
          FailureType.CONFIG_INVALID,
          `invalid ${first?.path.join('.') || 'value'}: ${first?.message ?? err.message}`,
        );
      }
      if (err instanceof OllamaError) {
        // A request Ollama refuses as malformed (a bad template, an unknown option) fails the same way every time.
        if (err.status === 400) throw permanentFailure(FailureType.CONFIG_INVALID, err.message);
        throw retryableFailure(FailureType.OLLAMA_UNAVAILABLE, err.message);
      }
      throw err;
    }
  }
}
