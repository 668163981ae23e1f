import type { RunOutcome } from '../domain/failures';
import { parsePipelineConfig, type PipelineConfig } from '../domain/model-config';
import { abandonDataset, deleteLineage } from '../db/queries/datasets';
import { advanceWatermark } from '../db/queries/models';
import { closeRun, ensureRun } from '../db/queries/runs';
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

export type { RunOutcome } from '../domain/failures';

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
        await closeRun(trx, {
          id: input.runId,
          status: input.status,
          stages: input.stages,
          result: input.result,
          error: input.error,
        });
        if (input.status === 'succeeded' && input.toSeq !== null) {
          await advanceWatermark(trx, input.model, input.toSeq);
        }
        if (input.status === 'succeeded' || !input.datasetId) return null;
        return abandonDataset(trx, input.datasetId);
      });
      if (abandoned) {
        const removed = await deps.store.deletePrefix(abandoned.prefix);
        await deleteLineage(deps.db, abandoned.id);
        activityLog(deps, { model: input.model }).info(
          { datasetId: abandoned.id, removed },
          'abandoned dataset removed',
        );
      }
    },
  };
}
