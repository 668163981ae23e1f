import { sql } from 'kysely';
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
        const existing = await trx.selectFrom('datasets').selectAll().where('id', '=', datasetId).executeTakeFirst();
        if (existing) return { fromSeq: existing.from_seq, toSeq: existing.to_seq };
        const model = await requireModel(trx, input.model);
        // seq comes from a sequence, so a transaction that took seq 10 can commit after one that took 11.
        // A SHARE lock waits for in-flight inserts to commit (and holds new ones for the instant this
        // transaction lasts), so everything at or below the high mark read here is visible and final.
        await sql`lock table interactions in share mode`.execute(trx);
        const { high } = await trx
          .selectFrom('interactions')
          .select((eb) => eb.fn.max<number | null>('seq').as('high'))
          .where('model_id', '=', input.model)
          .executeTakeFirstOrThrow();
        const fromSeq = model.watermark_seq;
        const toSeq = Math.max(fromSeq, Number(high ?? 0));
        await trx
          .insertInto('datasets')
          .values({
            id: datasetId,
            model_id: input.model,
            run_id: input.runId,
            status: 'collected',
            from_seq: fromSeq,
            to_seq: toSeq,
            prefix: datasetPrefixFor(input.model, datasetId),
          })
          .execute();
        return { fromSeq, toSeq };
      });

      const counts = await deps.db
        .selectFrom('interactions as i')
        .innerJoin('subjects as s', 's.id', 'i.subject_id')
        .select((eb) => [
          eb.fn.countAll<number>().as('interactions'),
          eb.fn.count<number>('i.id').filterWhere('s.training_consent', '=', true).as('consented'),
          eb.fn.count<number>('s.id').distinct().filterWhere('s.training_consent', '=', true).as('subjects'),
        ])
        .where('i.model_id', '=', input.model)
        .where('i.seq', '>', range.fromSeq)
        .where('i.seq', '<=', range.toSeq)
        .executeTakeFirstOrThrow();
      const summary: CollectSummary = {
        datasetId,
        ...range,
        interactions: Number(counts.interactions),
        consented: Number(counts.consented),
        excludedNoConsent: Number(counts.interactions) - Number(counts.consented),
        subjects: Number(counts.subjects),
      };
      log.info(summary, 'collected');
      return summary;
    },
  };
}
