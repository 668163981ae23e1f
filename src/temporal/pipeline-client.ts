import { randomUUID } from 'node:crypto';
import { WorkflowIdConflictPolicy, WorkflowIdReusePolicy, type Client } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import type { Db } from '../db/pool';
import { ensureRun } from '../db/queries/runs';
import {
  MODEL_SEARCH_ATTRIBUTE,
  pipelineWorkflowId,
  WORKFLOW_TYPE,
  type PipelineInput,
  type PipelineResult,
} from '../workflows/messages';
import type { TrainingPipeline } from '../workflows/pipeline';

/**
 * Starts the model's pipeline, or joins the one already running: the workflow id is per model and a conflict
 * uses the existing execution, so two concurrent requests get the same run. A closed run's id may be reused.
 */
export async function startPipeline(
  temporal: Client,
  db: Db,
  opts: {
    model: string;
    taskQueue: string;
    /** Where train and evaluate run; the default queue name when absent. */
    gpuTaskQueue?: string;
    /** Seconds a training GPU host may be silent before its attempt is retried elsewhere; the default when absent. */
    gpuHeartbeatTimeoutS?: number;
    trigger: PipelineInput['trigger'];
    requestedBy: string | null;
  },
) {
  const workflowId = pipelineWorkflowId(opts.model);
  const requestId = randomUUID();
  const handle = await temporal.workflow.start<typeof TrainingPipeline>(WORKFLOW_TYPE, {
    workflowId,
    taskQueue: opts.taskQueue,
    args: [
      {
        model: opts.model,
        trigger: opts.trigger,
        requestedBy: opts.requestedBy,
        requestId,
        ...(opts.gpuTaskQueue ? { gpuTaskQueue: opts.gpuTaskQueue } : {}),
        ...(opts.gpuHeartbeatTimeoutS ? { gpuHeartbeatTimeoutS: opts.gpuHeartbeatTimeoutS } : {}),
      },
    ],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    typedSearchAttributes: new TypedSearchAttributes([{ key: MODEL_SEARCH_ATTRIBUTE, value: opts.model }]),
    // The Temporal UI's summary of the run; its current details follow the stage (run-status.ts).
    staticSummary: `${opts.model} · ${opts.trigger} · requested by ${opts.requestedBy ?? 'unknown'}`,
  });
  const runId = handle.firstExecutionRunId;
  // Recorded here too, so the run is listed before the worker picks it up. Fields come from the workflow.
  await ensureRun(db, {
    id: runId,
    workflowId,
    modelId: opts.model,
    trigger: opts.trigger,
    requestedBy: null,
    requestId: null,
  });
  return { workflowId, runId, requestId, result: () => handle.result() as Promise<PipelineResult> };
}
