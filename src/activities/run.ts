import type { RunOutcome } from '../domain/failures';
import { parsePipelineConfig, type PipelineConfig } from '../domain/model-config';
import { abandonDataset, deleteLineage, lastCollectedSeq } from '../db/queries/datasets';
import { advanceWatermark } from '../db/queries/models';
import { rangeCounts } from '../db/queries/interactions';
import { closeRun, ensureRun, minutesSinceLastRun } from '../db/queries/runs';
import type { VolumeTrigger } from '../workflows/messages';
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

export interface VolumeCheck {
  due: boolean;
  /** Consented examples no run has collected yet. */
  newExamples: number;
  reason: string;
}

export function createRunActivities(deps: ActivityDeps) {
  return {
    /**
     * The volume trigger's question: have at least `minExamples` consented examples arrived that no run has looked at
     * yet (after the model's watermark and after every range a run collected, whatever its outcome, so a rejected or
     * failed run is not retried on the same data), and did the model's last run start at least `minIntervalMinutes`
     * ago?
     */
    async volumeDue(input: VolumeTrigger & { model: string }): Promise<VolumeCheck> {
      const model = await requireModel(deps.db, input.model);
      const after = Math.max(model.watermark_seq, (await lastCollectedSeq(deps.db, input.model)) ?? 0);
      const { consented: n } = await rangeCounts(deps.db, input.model, after, Number.MAX_SAFE_INTEGER);
      const examples = `${n} new consented example${n === 1 ? '' : 's'} since the last run's data`;
      if (n < input.minExamples) {
        return { due: false, newExamples: n, reason: `${examples}, fewer than ${input.minExamples}` };
      }
      const minutes = await minutesSinceLastRun(deps.db, input.model);
      if (minutes !== null && minutes < input.minIntervalMinutes) {
        return {
          due: false,
          newExamples: n,
          reason: `${examples}, but the last run started ${Math.floor(minutes)} min ago (at most one every ${input.minIntervalMinutes} min)`,
        };
      }
      return { due: true, newExamples: n, reason: `${examples} (at least ${input.minExamples})` };
    },

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
