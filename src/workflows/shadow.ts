import { CancellationScope, log, sleep } from '@temporalio/workflow';
import type { ShadowConfig } from '../domain/model-config';
import type { ShadowVerdict } from '../domain/shadow';
import type { PipelineRun } from './run-status';
import { judging, servingMoves } from './timeouts';

export interface ShadowOutcome {
  outcome: 'passed' | 'rolled_back' | 'skipped';
  reasons: string[];
  /** The last verdict: pairs, dropped calls, error rate, latency ratio, win-or-tie rate with its interval. */
  verdict: ShadowVerdict | null;
  extensions: number;
  /** Every comparison, in order (each over all pairs since the shadow began); the last is `verdict`. */
  checks?: ShadowVerdict[];
}

/**
 * The shadow stage: the candidate answers a share of production's live calls in the background (the `shadow` alias
 * tells the API which version), and after each hold the pairs are judged. A worse candidate is rolled back before
 * any user has seen it; too little evidence extends the hold, then `insufficientTraffic` decides; a candidate that
 * passes goes on to the canary. The alias comes off whatever happens (PipelineRun.finish takes it off a run that
 * ends otherwise).
 */
export async function runShadow(run: PipelineRun, c: ShadowConfig, versionId: string): Promise<ShadowOutcome> {
  const ids = { runId: run.runId, model: run.input.model, versionId };
  const { production, incumbent } = await servingMoves.servingState({ model: run.input.model });
  if (!production && !incumbent) {
    return {
      outcome: 'skipped',
      reasons: ['nothing serves the model yet: no calls to shadow'],
      verdict: null,
      extensions: 0,
    };
  }
  const { since } = await servingMoves.setShadow(ids);
  const end = (reason: string, rolledBack: boolean) =>
    CancellationScope.nonCancellable(() => servingMoves.endShadow({ ...ids, reason, rolledBack }));
  const checks: ShadowVerdict[] = [];
  for (let extension = 0; ; extension++) {
    await sleep(c.holdSeconds * 1000);
    const last = await judging.compareShadow({ ...ids, since });
    checks.push(last);
    if (last.verdict === 'fail') {
      const reason = `shadow: candidate worse than production: ${last.reasons.join('; ')}`;
      await end(reason, true);
      return { outcome: 'rolled_back', reasons: [reason], verdict: last, extensions: extension, checks };
    }
    if (last.verdict === 'pass') {
      await end('shadow passed', false);
      return { outcome: 'passed', reasons: [], verdict: last, extensions: extension, checks };
    }
    if (extension >= c.maxExtensions) {
      if (c.insufficientTraffic === 'rollback') {
        const reason = `too little shadow evidence: ${last.reasons.join('; ')}`;
        await end(reason, true);
        return { outcome: 'rolled_back', reasons: [reason], verdict: last, extensions: extension, checks };
      }
      log.warn('too little shadow evidence; proceeding as configured', { reasons: last.reasons });
      await end('shadow over: too little evidence, proceeding as configured', false);
      return { outcome: 'passed', reasons: last.reasons, verdict: last, extensions: extension, checks };
    }
  }
}
