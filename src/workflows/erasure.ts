import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ErasureResult } from '../activities/erasure';

/** Rewriting datasets: object I/O under a heartbeat, retried until it is done — an erasure must complete. */
const objects = proxyActivities<Activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * EraseSubject: the durable half of `DELETE /v1/subjects/:id`. The API removes the subject's rows from
 * PostgreSQL in one transaction and records the erasure; this workflow rewrites the stored datasets that held
 * them, surviving worker and API restarts. Its input is the erasure id only: the subject's id never enters
 * Temporal's history.
 */
export async function EraseSubject(input: { erasureId: string }): Promise<ErasureResult> {
  return objects.rewriteErasedDatasets({ erasureId: input.erasureId });
}
