import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { DatasetManifest } from '../../dataset/manifest';
import type { Dataset } from '../database';
import { withPgTransaction, type Conn, type Db } from '../pool';

// Datasets (a run's fixed range of interactions, then the objects export wrote) and their lineage (dataset_items:
// which interaction each row came from).

export async function getDataset(db: Conn, id: string): Promise<Dataset | undefined> {
  return db.selectFrom('datasets').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Records a run's range of interactions as a dataset in state `collected`. */
export async function insertCollectedDataset(
  db: Conn,
  d: { id: string; model: string; runId: string; fromSeq: number; toSeq: number; prefix: string },
): Promise<void> {
  await db
    .insertInto('datasets')
    .values({
      id: d.id,
      model_id: d.model,
      run_id: d.runId,
      status: 'collected',
      from_seq: d.fromSeq,
      to_seq: d.toSeq,
      prefix: d.prefix,
    })
    .execute();
}

/** The end of the newest range any of the model's runs collected (whatever became of the run), or null. */
export async function lastCollectedSeq(db: Conn, model: string): Promise<number | null> {
  const row = await db
    .selectFrom('datasets')
    .select((eb) => eb.fn.max('to_seq').as('seq'))
    .where('model_id', '=', model)
    .executeTakeFirst();
  return row?.seq == null ? null : Number(row.seq);
}

/** Marks a dataset that never became ready abandoned; returns it (to remove its objects), or undefined. */
export async function abandonDataset(db: Conn, id: string): Promise<{ id: string; prefix: string } | undefined> {
  return db
    .updateTable('datasets')
    .set({ status: 'abandoned' })
    .where('id', '=', id)
    .where('status', '!=', 'ready')
    .returning(['id', 'prefix'])
    .executeTakeFirst();
}

export async function deleteLineage(db: Conn, datasetId: string): Promise<void> {
  await db.deleteFrom('dataset_items').where('dataset_id', '=', datasetId).execute();
}

/** One row's lineage as the line commitExport's COPY reads (text format, tab-separated). */
export function lineageLine(row: {
  datasetId: string;
  interactionId: string;
  split: 'train' | 'validation';
  line: number;
  rowSha256: string;
}): string {
  return [row.datasetId, row.interactionId, row.split, String(row.line), row.rowSha256].join('\t');
}

/** An interaction named by the lineage was erased while the dataset was being exported: export again. */
export class LineageConflict extends Error {
  constructor(datasetId: string) {
    super(`an interaction of dataset ${datasetId} was erased while it was being exported; exporting again`);
  }
}

/**
 * Lineage and readiness in one transaction. The dataset row is locked first, which serialises with a concurrent
 * retry of the export and with the run's cleanup. `lineage` streams lineageLine()s, one a line. Returns false when
 * the dataset was abandoned (true when a retry finds it ready already); throws LineageConflict when an erasure
 * deleted one of its interactions (the insert fails on the foreign key).
 */
export async function commitExport(
  db: Db,
  input: { datasetId: string; manifestKey: string; manifest: DatasetManifest; lineage: () => NodeJS.ReadableStream },
): Promise<boolean> {
  try {
    return await withPgTransaction(db, async (client) => {
      const { rows } = await client.query<{ status: string }>('select status from datasets where id = $1 for update', [
        input.datasetId,
      ]);
      const status = rows[0]?.status;
      if (status !== 'collected') return status === 'ready';
      await client.query('delete from dataset_items where dataset_id = $1', [input.datasetId]);
      await pipeline(
        input.lineage(),
        client.query(copyFrom('copy dataset_items (dataset_id, interaction_id, split, line, row_sha256) from stdin')),
      );
      await client.query(
        `update datasets set status = 'ready', manifest_key = $2, manifest = $3, config_hash = $4, ready_at = now()
         where id = $1`,
        [input.datasetId, input.manifestKey, JSON.stringify(input.manifest), input.manifest.configHash],
      );
      return true;
    });
  } catch (err) {
    if ((err as { code?: string }).code === '23503') throw new LineageConflict(input.datasetId);
    throw err;
  }
}
