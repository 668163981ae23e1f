import path from 'node:path';
import type { NativeConnection } from '@temporalio/worker';
import { bundleWorkflowCode, Worker, type WorkflowBundle, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { createGpuActivities } from '../activities/gpu';
import { ClassifyFailuresInterceptor } from '../activities/failures';
import { attemptJournal } from './attempt-journal';
import type { GpuActivityDeps } from '../activities/train';

export const WORKFLOWS_PATH = path.resolve(import.meta.dirname, '../workflows/index.ts');

/**
 * Bundles the workflow code once per process. The bundler rejects Node built-ins and other non-deterministic
 * modules pulled into workflow code, so a bad import fails here (and in the bundle test), not at run time.
 */
export async function bundleWorkflows(): Promise<WorkflowBundle> {
  return bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
}

const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

export interface CpuWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  bundle: WorkflowBundleOption;
  /** Wrap or replace activities (tests inject faults this way). */
  activities?: Record<string, (...args: never[]) => Promise<unknown>>;
  lifecycle?: WorkerLifecycle;
}

/** How a worker's activities outlive it: see attempt-journal.ts, and Temporal's shutdownGraceTime. */
export interface WorkerLifecycle {
  /** Where the attempts in flight are journaled. */
  journalDir?: string;
  /** How long a shutdown lets activities run on before they are cancelled (they are idempotent and retried). */
  shutdownGraceMs?: number;
}

function interceptorsFor(lifecycle: WorkerLifecycle | undefined) {
  return {
    activity: [
      ...(lifecycle?.journalDir ? [attemptJournal(lifecycle.journalDir)] : []),
      () => ({ inbound: new ClassifyFailuresInterceptor() }),
    ],
  };
}

/**
 * The CPU worker: every workflow and the non-GPU activities. maxCachedWorkflows is sized for a small host:
 * pipelines are few and long, so a small sticky cache keeps memory flat without replaying on every task.
 */
export async function createCpuWorker(opts: CpuWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    workflowBundle: opts.bundle,
    activities: opts.activities ?? createActivities(opts.deps),
    maxCachedWorkflows: 100,
    maxConcurrentActivityTaskExecutions: 8,
    // Bookkeeping activities finish within the grace; longer ones are cancelled and retried by the next worker.
    shutdownGraceTime: opts.lifecycle?.shutdownGraceMs ?? '5 seconds',
    interceptors: interceptorsFor(opts.lifecycle),
  });
}

export interface GpuWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: GpuActivityDeps;
  lifecycle?: WorkerLifecycle;
}

export async function createGpuWorker(opts: GpuWorkerOptions) {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    activities: createGpuActivities(opts.deps),
    // Training saturates the device; one activity at a time per GPU host.
    maxConcurrentActivityTaskExecutions: 1,
    // Progress reaches the server at least every 10 s (the SDK would otherwise hold heartbeats up to 30-60 s).
    defaultHeartbeatThrottleInterval: '10 seconds',
    maxHeartbeatThrottleInterval: '10 seconds',
    // A shutdown cancels the training activity at once: the trainer checkpoints (seconds to a minute on a big model)
    // and the attempt fails, to be resumed from that checkpoint by the next worker. Waiting first would only lose
    // the steps a host's own stop deadline (a container's, the OOM killer's) cuts off.
    shutdownGraceTime: opts.lifecycle?.shutdownGraceMs ?? '1 second',
    interceptors: interceptorsFor(opts.lifecycle),
  });
}
