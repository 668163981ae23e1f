import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PromoteResult, RollbackPlan } from '../activities/promote';

const PERMANENT = ['CONFIG_INVALID', 'MODEL_NOT_FOUND', 'INVALID_STATE'];

/** Registry and Ollama tag work: quick, retried through an Ollama or database restart (up to half an hour). */
const serving = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  scheduleToCloseTimeout: '30 minutes',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    nonRetryableErrorTypes: PERMANENT,
  },
});

/**
 * RollbackModel: puts the previous production version back (`POST /v1/models/:model/rollback`,
 * `tuneloop rollback`). The plan (from which version to which) is fixed by its first activity, so a retry of the
 * second after a crash finishes the same rollback instead of going back one step further.
 */
export async function RollbackModel(input: {
  model: string;
  actor: string;
  reason: string;
}): Promise<{ plan: RollbackPlan; result: PromoteResult }> {
  const plan = await serving.planRollback({ model: input.model });
  const result = await serving.rollback({ ...plan, actor: input.actor, reason: input.reason });
  return { plan, result };
}
