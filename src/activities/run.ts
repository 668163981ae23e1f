import { sql } from 'kysely';
import { parsePipelineConfig, type PipelineConfig } from '../domain/model-config';
import { ensureRun } from '../db/queries/runs';
import { requireModel } from './lookups';
import { activityLog, type ActivityDeps } from './deps';

export interface StartRunInput {
  runId: string;
  workflowId: string;
  model: string;
  trigger: string;
  requestedBy: string | null;
  requestId: string | null;
}

export interface RunPlan {
  model: string;
  config: PipelineConfig;
  watermark: number;
}

/**
 * How a run ends. Only `succeeded` moves the watermark: after `rejected` (the gate said no) or `rolled_back`
 * (the canary was worse) the same interactions go into the next run again, with whatever arrived since.
 */
export type RunOutcome =
  'succeeded' | 'insufficient_data' | 'rejected' | 'rolled_back' | 'failed' | 'aborted' | 'cancelled';

export interface FinishRunInput {
  runId: string;
  model: string;
  status: RunOutcome;
  stages: unknown[];
  result: unknown;
  error: string | null;
  datasetId: string | null;
  /** The watermark to move the model to: only applied when the run succeeded. */
  toSeq: number | null;
}

export function createRunActivities(deps: ActivityDeps) {
  return {
    /** Records the run (idempotently) and returns the model's pipeline config as the run will use it. */
    async startRun(input: StartRunInput): Promise<RunPlan> {
      const model = await requireModel(deps.db, input.model);
      const config = parsePipelineConfig(model.config);
      await ensureRun(deps.db, {
        id: input.runId,
        workflowId: input.workflowId,
        modelId: input.model,
        trigger: input.trigger,
        requestedBy: input.requestedBy,
        requestId: input.requestId,
      });
      activityLog(deps, { model: input.model }).info({ runId: input.runId }, 'run started');
      return { model: input.model, config, watermark: model.watermark_seq };
    },

    /**
     * Closes the run. Success moves the model's watermark (never backwards); any other outcome removes the
     * objects of a dataset that never became ready, so an abandoned run leaves nothing half-written behind.
     */
    async finishRun(input: FinishRunInput): Promise<void> {
      const abandoned = await deps.db.transaction().execute(async (trx) => {
        await trx
          .updateTable('runs')
          .set({
            status: input.status,
            stage: null,
            stages: JSON.stringify(input.stages),
            result: JSON.stringify(input.result),
            error: input.error,
            ended_at: sql<Date>`coalesce(ended_at, now())`,
          })
          .where('id', '=', input.runId)
          .execute();
        if (input.status === 'succeeded' && input.toSeq !== null) {
          await trx
            .updateTable('models')
            .set({ watermark_seq: sql<number>`greatest(watermark_seq, ${input.toSeq})`, updated_at: new Date() })
            .where('id', '=', input.model)
            .execute();
        }
        if (input.status === 'succeeded' || !input.datasetId) return null;
        return trx
          .updateTable('datasets')
          .set({ status: 'abandoned' })
          .where('id', '=', input.datasetId)
          .where('status', '!=', 'ready')
          .returning(['id', 'prefix'])
          .executeTakeFirst();
      });
      if (abandoned) {
        const removed = await deps.store.deletePrefix(abandoned.prefix);
        await deps.db.deleteFrom('dataset_items').where('dataset_id', '=', abandoned.id).execute();
        activityLog(deps, { model: input.model }).info(
          { datasetId: abandoned.id, removed },
          'abandoned dataset removed',
        );
      }
    },
  };
}
