import type { ErasureResult } from '../activities/erasure';
import { erasureIO } from './timeouts';

/**
 * EraseSubject: the durable half of `DELETE /v1/subjects/:id`. The API removes the subject's rows from
 * PostgreSQL in one transaction and records the erasure; this workflow rewrites the stored datasets that held
 * them, surviving worker and API restarts. Its input is the erasure id only: the subject's id never enters
 * Temporal's history.
 */
export async function EraseSubject(input: { erasureId: string }): Promise<ErasureResult> {
  return erasureIO.rewriteErasedDatasets({ erasureId: input.erasureId });
}
