import { mergeVersionMetrics, setVersionStatus } from '../db/queries/registry';
import { gate, type GateResult } from '../domain/evaluation';
import { parsePipelineConfig } from '../domain/model-config';
import { activityLog, type ActivityDeps } from './deps';
import type { EvaluateSummary } from './evaluate';
import type { JudgeSummary } from './judge';
import { requireModel } from './lookups';

export interface GateInput {
  runId: string;
  model: string;
  versionId: string;
  evaluation: EvaluateSummary;
  judge: JudgeSummary | null;
}

export function createGateActivities(deps: ActivityDeps) {
  return {
    /**
     * The evaluate stage's verdict on the candidate, by the model's thresholds (src/domain/evaluation.ts gate):
     * recorded on the version; a rejected version keeps its adapter and metrics for inspection and never serves.
     */
    async decideGate(input: GateInput): Promise<GateResult> {
      const model = await requireModel(deps.db, input.model);
      const result = gate({
        candidate: input.evaluation.candidate,
        baseline: input.evaluation.baseline,
        baselineName: input.evaluation.baselineName,
        judge: input.judge,
        thresholds: parsePipelineConfig(model.config).thresholds,
      });
      await mergeVersionMetrics(deps.db, input.versionId, 'gate', result);
      if (!result.passed) await setVersionStatus(deps.db, input.versionId, 'rejected', result.reasons.join('; '));
      activityLog(deps, { model: input.model, runId: input.runId }).info(
        { passed: result.passed, reasons: result.reasons },
        'gate',
      );
      return result;
    },
  };
}
