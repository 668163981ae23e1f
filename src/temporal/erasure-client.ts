import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import type { ErasureResult } from '../activities/erasure';
import type { Db } from '../db/pool';
import { pendingErasureIds } from '../db/queries/erasure';
import type { Logger } from '../log';
import { ERASURE_WORKFLOW_TYPE, erasureWorkflowId } from '../workflows/messages';

/** Starts (or joins) the workflow that rewrites an erasure's datasets. */
export async function startErasure(temporal: Client, opts: { erasureId: string; taskQueue: string }) {
  const handle = await temporal.workflow.start(ERASURE_WORKFLOW_TYPE, {
    workflowId: erasureWorkflowId(opts.erasureId),
    taskQueue: opts.taskQueue,
    args: [{ erasureId: opts.erasureId }],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
  });
  return { result: () => handle.result() as Promise<ErasureResult> };
}

/**
 * Erasures whose database half committed but whose workflow never started (the API died in between): started
 * now. Runs when the API starts; joining an erasure already running is harmless.
 */
export async function resumePendingErasures(db: Db, temporal: Client, taskQueue: string, log: Logger) {
  const pending = await pendingErasureIds(db);
  for (const erasureId of pending) await startErasure(temporal, { erasureId, taskQueue });
  if (pending.length) log.info({ erasures: pending.length }, 'pending erasures resumed');
  return pending.length;
}
