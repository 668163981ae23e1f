import { ActivityCancellationType, proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { GpuActivities } from '../activities/gpu';
import { PERMANENT_FAILURES } from '../domain/failures';

// Every activity timeout class, named for what the work is, used by every workflow. Each is chosen, never a
// default: start-to-close for one attempt, schedule-to-close for all of them, a heartbeat where the work is long,
// and the failure types no retry can fix (domain/failures.ts) are never retried.

const nonRetryableErrorTypes = [...PERMANENT_FAILURES];

/** Database bookkeeping (start and finish a run, collect, the gate): quick, retried through half an hour of outage. */
export const BOOKKEEPING: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '30 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', nonRetryableErrorTypes },
};

/**
 * Dataset I/O (anonymize, export): streaming through local disk to the store, minutes, heartbeating per page and per
 * upload. TRY_CANCEL: an abort proceeds at once; an export still uploading finds its dataset abandoned at commit and
 * removes what it wrote.
 */
export const DATASET_IO: ActivityOptions = {
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '2 minutes',
  cancellationType: ActivityCancellationType.TRY_CANCEL,
  retry: {
    initialInterval: '2 seconds',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 20,
    nonRetryableErrorTypes,
  },
};

/**
 * Erasure's rewrite of stored objects: object I/O under a heartbeat, retried until it is done (no attempt limit):
 * an erasure must complete.
 */
export const ERASURE_IO: ActivityOptions = {
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
};

/** Judging: the judge asks a model a few hundred questions; minutes, with a heartbeat. */
export const JUDGING: ActivityOptions = {
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '5 minutes',
  retry: {
    initialInterval: '5 seconds',
    backoffCoefficient: 2,
    maximumInterval: '2 minutes',
    maximumAttempts: 10,
    nonRetryableErrorTypes,
  },
};

/**
 * Serving moves (registry aliases and Ollama tag copies: canary steps, promotion, rollback): quick, retried through an
 * Ollama or database restart for up to half an hour. They do not heartbeat, so a cancellation cannot reach them: the
 * workflow waits for the one in flight to finish, so it knows what was done (a canary alias set, a promotion made)
 * before it cleans up.
 */
export const SERVING_MOVES: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  scheduleToCloseTimeout: '30 minutes',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', nonRetryableErrorTypes },
};

/**
 * GPU work (train, evaluate, register) on the GPU host's task queue: hours, on hosts that may be preempted. A
 * heartbeat every 10 s, so (by default) two minutes of silence means the host or worker is gone and the next attempt
 * (any GPU worker) resumes from the newest checkpoint. Retries are many and slow: a preempted host comes back in
 * minutes. Cancelling waits for the trainer's last checkpoint. Queued without a GPU worker, the stage waits for one
 * (up to three days).
 */
export function gpuWork(taskQueue: string, heartbeatTimeoutS: number): ActivityOptions {
  return {
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
      nonRetryableErrorTypes,
    },
  };
}

export const bookkeeping = proxyActivities<Activities>(BOOKKEEPING);
export const datasetIO = proxyActivities<Activities>(DATASET_IO);
export const erasureIO = proxyActivities<Activities>(ERASURE_IO);
export const judging = proxyActivities<Activities>(JUDGING);
export const servingMoves = proxyActivities<Activities>(SERVING_MOVES);
export const gpuActivities = (taskQueue: string, heartbeatTimeoutS: number) =>
  proxyActivities<GpuActivities>(gpuWork(taskQueue, heartbeatTimeoutS));
