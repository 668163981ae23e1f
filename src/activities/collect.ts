import { getDataset, insertCollectedDataset } from '../db/queries/datasets';
import { committedHighSeq, rangeCounts } from '../db/queries/interactions';
import { requireModel } from './lookups';
import { activityLog, type ActivityDeps } from './deps';

export interface CollectInput {
  runId: string;
  model: string;
}

export interface CollectSummary {
  datasetId: string;
  /** Exclusive lower bound: the model's watermark when the run began collecting. */
  fromSeq: number;
  /** Inclusive upper bound: every interaction up to here was committed when collect ran. */
  toSeq: number;
  interactions: number;
  consented: number;
  excludedNoConsent: number;
  subjects: number;
}

export const datasetIdFor = (runId: string) => `ds-${runId}`;
export const datasetPrefixFor = (model: string, datasetId: string) => `datasets/${model}/${datasetId}/`;

/**
 * collect: fixes the range of interactions this run will use, (watermark, high mark], and records it as a
 * dataset in state `collected`. Nothing leaves Postgres here; export streams the rows. Idempotent: a retry
 * returns the range recorded by the first attempt.
 */
export function createCollectActivities(deps: ActivityDeps) {
  return {
    async collect(input: CollectInput): Promise<CollectSummary> {
      const datasetId = datasetIdFor(input.runId);
      const log = activityLog(deps, { model: input.model });
      const range = await deps.db.transaction().execute(async (trx) => {
        const existing = await getDataset(trx, datasetId);
        if (existing) return { fromSeq: existing.from_seq, toSeq: existing.to_seq };
        const model = await requireModel(trx, input.model);
        const fromSeq = model.watermark_seq;
        const toSeq = Math.max(fromSeq, await committedHighSeq(trx, input.model));
        await insertCollectedDataset(trx, {
          id: datasetId,
          model: input.model,
          runId: input.runId,
          fromSeq,
          toSeq,
          prefix: datasetPrefixFor(input.model, datasetId),
        });
        return { fromSeq, toSeq };
      });

      const counts = await rangeCounts(deps.db, input.model, range.fromSeq, range.toSeq);
      const summary: CollectSummary = {
        datasetId,
        ...range,
        interactions: counts.interactions,
        consented: counts.consented,
        excludedNoConsent: counts.interactions - counts.consented,
        subjects: counts.subjects,
      };
      log.info(summary, 'collected');
      return summary;
    },
  };
}
