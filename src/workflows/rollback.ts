import type { PromoteResult, RollbackPlan } from '../activities/promote';
import { servingMoves } from './timeouts';

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
  const plan = await servingMoves.planRollback({ model: input.model });
  const result = await servingMoves.rollback({ ...plan, actor: input.actor, reason: input.reason });
  return { plan, result };
}
