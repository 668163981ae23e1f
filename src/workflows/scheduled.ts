import { ParentClosePolicy, startChild, uuid4 } from '@temporalio/workflow';
import { TypedSearchAttributes, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  MODEL_SEARCH_ATTRIBUTE,
  pipelineWorkflowId,
  type ScheduledRunInput,
  type ScheduledRunResult,
  type VolumeRunInput,
} from './messages';
import { TrainingPipeline } from './pipeline';
import { bookkeeping } from './timeouts';

/**
 * What a model's Temporal Schedule starts: the model's pipeline under its one workflow id (so a scheduled run and a
 * run someone asked for can never go at once), then waits for it, so that the schedule's overlap policy (skip)
 * sees the run as going until it ends. When one of the model's runs is going already, this run is skipped and
 * says so. The pipeline is abandoned, not ended, if this workflow is terminated (deleting a schedule does not stop a
 * run); cancelling this workflow cancels the pipeline too, as cancellation reaches the child it waits for.
 */
export async function ScheduledRun(input: ScheduledRunInput): Promise<ScheduledRunResult> {
  return runPipeline(input, null);
}

/**
 * What a model's volume schedule starts every few minutes: it asks whether enough consented examples no run has looked
 * at yet have arrived, and whether the last run started long enough ago; if so it runs the pipeline as ScheduledRun
 * does, saying why, else it is skipped with the reason. A workflow type of its own, so that a worker that does not
 * know the check never runs the pipeline in its place (it fails the task until a worker that knows it takes it).
 */
export async function VolumeRun(input: VolumeRunInput): Promise<ScheduledRunResult> {
  const check = await bookkeeping.volumeDue({ model: input.model, ...input.volume });
  if (!check.due) return { runId: null, status: 'skipped', reason: check.reason };
  return runPipeline(input, check.reason);
}

async function runPipeline(input: ScheduledRunInput, why: string | null): Promise<ScheduledRunResult> {
  let child;
  try {
    child = await startChild(TrainingPipeline, {
      workflowId: pipelineWorkflowId(input.model),
      args: [
        {
          model: input.model,
          trigger: 'schedule',
          requestedBy: `schedule:${input.schedule}`,
          requestId: uuid4(),
          ...(input.gpuTaskQueue ? { gpuTaskQueue: input.gpuTaskQueue } : {}),
          ...(input.gpuHeartbeatTimeoutS ? { gpuHeartbeatTimeoutS: input.gpuHeartbeatTimeoutS } : {}),
        },
      ],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      staticSummary: `${input.model} · schedule · ${input.schedule}`,
      typedSearchAttributes: new TypedSearchAttributes([{ key: MODEL_SEARCH_ATTRIBUTE, value: input.model }]),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      return { runId: null, status: 'skipped', reason: `a run of ${input.model} was going already` };
    }
    throw err;
  }
  const result = await child.result();
  return { runId: child.firstExecutionRunId, status: result.status, reason: why };
}
