import { sql } from 'kysely';
import type { Conn } from '../pool';

// Objects written from a dataset's rows besides the dataset itself (see migrations/…_add_derived_objects.ts).

export interface DerivedObject {
  key: string;
  datasetId: string;
  runId: string | null;
  /** What wrote it: `eval.pairs`, `eval.judgements`, `register.parity`… */
  kind: string;
}

/** Registers an object before it is written (idempotent): an erasure that runs later finds it. */
export async function registerDerivedObject(db: Conn, o: DerivedObject): Promise<void> {
  await db
    .insertInto('derived_objects')
    .values({ key: o.key, dataset_id: o.datasetId, run_id: o.runId, kind: o.kind })
    .onConflict((oc) => oc.column('key').doNothing())
    .execute();
}

export async function derivedObjectsOf(db: Conn, datasetId: string): Promise<DerivedObject[]> {
  const rows = await db
    .selectFrom('derived_objects')
    .select(['key', 'dataset_id', 'run_id', 'kind'])
    .where('dataset_id', '=', datasetId)
    .orderBy('key')
    .execute();
  return rows.map((r) => ({ key: r.key, datasetId: r.dataset_id, runId: r.run_id, kind: r.kind }));
}

/**
 * Holds the dataset's row lock shared until the caller's transaction ends: an erasure rewriting the dataset (which
 * holds it exclusively) waits, and one under way is waited for. Null when there is no such dataset.
 */
export async function lockDatasetShared(trx: Conn, datasetId: string): Promise<{ id: string } | null> {
  const r = await sql<{ id: string }>`select id from datasets where id = ${datasetId} for share`.execute(trx);
  return r.rows[0] ?? null;
}

/** Which of `shas` are still rows of the dataset: an erasure removes a subject's rows from it in its first step. */
export async function presentRows(db: Conn, datasetId: string, shas: string[]): Promise<Set<string>> {
  if (!shas.some((s) => typeof s === 'string')) return new Set();
  const rows = await db
    .selectFrom('dataset_items')
    .select('row_sha256')
    .where('dataset_id', '=', datasetId)
    .where('row_sha256', 'in', [...new Set(shas.filter((s) => typeof s === 'string'))])
    .execute();
  return new Set(rows.map((r) => r.row_sha256));
}
