import { ParentClosePolicy, startChild, uuid4 } from '@temporalio/workflow';
import { TypedSearchAttributes, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  MODEL_SEARCH_ATTRIBUTE,
  pipelineWorkflowId,
  type ScheduledRunInput,
  type ScheduledRunResult,
} from './messages';
import { TrainingPipeline } from './pipeline';
import { bookkeeping } from './timeouts';

/**
 * What a model's Temporal Schedule starts: the model's pipeline under its one workflow id (so a scheduled run and a
 * run someone asked for can never go at once), then waits for it, so that the schedule's overlap policy (skip)
 * sees the run as going until it ends. When one of the model's runs is going already, this run is skipped and
 * says so. The pipeline is abandoned, not ended, if this workflow is terminated (deleting a schedule does not stop a
 * run); cancelling this workflow cancels the pipeline too, as cancellation reaches the child it waits for.
 * Started by a model's volume schedule, it first asks whether enough new consented examples have arrived since the
 * last successful run, and the last run is long enough ago; when not, it is skipped with the reason.
 */
export async function ScheduledRun(input: ScheduledRunInput): Promise<ScheduledRunResult> {
  let why: string | null = null;
  if (input.volume) {
    const check = await bookkeeping.volumeDue({ model: input.model, ...input.volume });
    if (!check.due) return { runId: null, status: 'skipped', reason: check.reason };
    why = check.reason;
  }
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
