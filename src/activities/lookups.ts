import type { Conn } from '../db/pool';
import { getDataset } from '../db/queries/datasets';
import { getModel } from '../db/queries/models';
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
