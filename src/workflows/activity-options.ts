import { ActivityCancellationType, type ActivityOptions } from '@temporalio/workflow';

// Activity options shared by more than one workflow. Pure values: workflow code may import them.

/** Failure types no retry can fix (src/activities/failures.ts PERMANENT_FAILURES). */
export const PERMANENT = [
  'CONFIG_INVALID',
  'MODEL_NOT_FOUND',
  'DATASET_INVALID',
  'GPU_OOM',
  'PARITY_MISMATCH',
  'INVALID_STATE',
];

/**
 * Registry moves and Ollama tag copies (canary steps, promotion, rollback): quick, retried through an Ollama or
 * database restart for up to half an hour. They do not heartbeat, so a cancellation cannot reach them: the
 * workflow waits for the one in flight to finish, so it knows what was done (a canary alias set, a promotion made)
 * before it cleans up.
 */
export const SERVING: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  scheduleToCloseTimeout: '30 minutes',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    nonRetryableErrorTypes: PERMANENT,
  },
};
