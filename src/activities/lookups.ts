import type { Conn } from '../db/pool';
import { getDataset } from '../db/queries/datasets';
import { getModel } from '../db/queries/models';
import type { IncumbentConfig } from '../domain/model-config';
import { IncumbentClient } from '../llm/incumbent';
import { FailureType, permanentFailure } from './failures';

// The lookups every stage starts with. A missing model or dataset is permanent: no retry will create it.

export async function requireModel(db: Conn, id: string) {
  const model = await getModel(db, id);
  if (!model) throw permanentFailure(FailureType.MODEL_NOT_FOUND, `model ${id} does not exist`);
  return model;
}

export async function requireDataset(db: Conn, id: string) {
  const dataset = await getDataset(db, id);
  if (!dataset) throw permanentFailure(FailureType.DATASET_INVALID, `dataset ${id} was never collected`);
  return dataset;
}

/** A dataset the stages before export work on: collected, not yet exported or abandoned. */
export async function requireCollectedDataset(db: Conn, id: string) {
  const dataset = await requireDataset(db, id);
  if (dataset.status !== 'collected')
    throw permanentFailure(FailureType.DATASET_INVALID, `dataset ${id} is ${dataset.status}`);
  return dataset;
}

/**
 * A client of the model's hosted incumbent for a stage that asks it (a teacher, a judge); null when the stage does
 * not. A key that is not set is permanent: no retry sets it.
 */
export function incumbentFor(asks: boolean, config: IncumbentConfig | undefined): IncumbentClient | null {
  if (!asks) return null;
  try {
    return new IncumbentClient(config!);
  } catch (err) {
    throw permanentFailure(FailureType.CONFIG_INVALID, (err as Error).message);
  }
}
