import { WorkflowFailedError, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { PromoteResult, RollbackPlan } from '../activities/promote';
import { ROLLBACK_WORKFLOW_TYPE, rollbackWorkflowId } from '../workflows/messages';

export class RollbackRefused extends Error {
  override readonly name = 'RollbackRefused';
}

/**
 * Puts a model's previous production version back, through the RollbackModel workflow (durable: a crash of the
 * caller or a worker mid-way does not leave it half done), and waits for it. A second request while one runs
 * joins it. Throws RollbackRefused when there is nothing to roll back to.
 */
export async function rollbackModel(
  temporal: Client,
  opts: { model: string; taskQueue: string; actor: string; reason: string },
): Promise<{ plan: RollbackPlan; result: PromoteResult }> {
  const handle = await temporal.workflow.start(ROLLBACK_WORKFLOW_TYPE, {
    workflowId: rollbackWorkflowId(opts.model),
    taskQueue: opts.taskQueue,
    args: [{ model: opts.model, actor: opts.actor, reason: opts.reason }],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
  });
  try {
    return (await handle.result()) as { plan: RollbackPlan; result: PromoteResult };
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? (err.cause?.cause ?? err.cause) : null;
    if (cause instanceof ApplicationFailure && cause.type === 'INVALID_STATE') throw new RollbackRefused(cause.message);
    throw err;
  }
}
