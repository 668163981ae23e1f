import { registerDerivedObject, lockDatasetShared, presentRows, type DerivedObject } from '../db/queries/derived';
import type { Db } from '../db/pool';
import type { BlobStore } from '../storage/blob-store';
import { FailureType, permanentFailure } from './failures';

/**
 * Objects a stage writes from a dataset's conversation text besides the dataset (evaluation pairs, verdicts, parity
 * cases…): JSON lines, each naming the dataset row it came from, so that an erasure can take a subject's lines out
 * of every one of them. This is the one way such an object is written.
 */

/** One line of a derived object: `row` is the sha256 of the dataset line it came from. */
export interface DerivedLine {
  row: string;
  [field: string]: unknown;
}

export interface DerivedInfo {
  key: string;
  sha256: string;
  bytes: number;
  lines: number;
  /** Lines left out because their row was erased after the stage read it. */
  erased: number;
}

/**
 * Registers the object (first, and committed: an erasure that starts while it is written finds it), then writes it
 * under the dataset's shared row lock, without the rows an erasure has removed since the stage read them. An
 * erasure rewriting the dataset holds that lock exclusively, so it either sees this object or has already removed
 * its subject's rows from the dataset — never neither.
 */
export async function putDerivedLines(
  deps: { db: Db; store: BlobStore },
  object: DerivedObject,
  lines: DerivedLine[],
): Promise<DerivedInfo> {
  await registerDerivedObject(deps.db, object);
  return deps.db.transaction().execute(async (trx) => {
    if (!(await lockDatasetShared(trx, object.datasetId))) {
      throw permanentFailure(FailureType.INVALID_STATE, `dataset ${object.datasetId} does not exist`);
    }
    const present = await presentRows(
      trx,
      object.datasetId,
      lines.map((l) => l.row),
    );
    const kept = lines.filter((l) => present.has(l.row));
    const info = await deps.store.put(object.key, Buffer.from(kept.map((l) => JSON.stringify(l) + '\n').join('')), {
      contentType: 'application/x-ndjson',
    });
    return {
      key: info.key,
      sha256: info.sha256,
      bytes: info.size,
      lines: kept.length,
      erased: lines.length - kept.length,
    };
  });
}
