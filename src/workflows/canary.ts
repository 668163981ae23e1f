import { condition, log, sleep, upsertSearchAttributes } from '@temporalio/workflow';
import type { PipelineConfig } from '../domain/model-config';
import type { CanaryVerdict } from '../domain/canary';
import { STAGE_SEARCH_ATTRIBUTE, type CanaryState } from './messages';
import type { PipelineRun } from './run-status';
import { servingMoves } from './timeouts';

export interface CanaryOutcome {
  outcome: 'passed' | 'rolled_back';
  reasons: string[];
  /** The traffic steps (percent) the canary passed. */
  steps: number[];
  /** Each comparison with production, in order: the step, the verdict and both sides' numbers (run pages). */
  checks?: CanaryCheck[];
}

export interface CanaryCheck extends CanaryVerdict {
  percent: number;
  /** 0 for the step's first comparison; more when too little traffic held the step longer. */
  extension: number;
}

export interface Approval {
  approved: boolean;
  reason: string;
}

type CanaryConfig = PipelineConfig['canary'];

/**
 * The canary stage: the version's share grows step by step (durable timers hold each step); after each hold the
 * canary is compared with production over the step's window, and a worse canary is rolled back at once. Too little
 * traffic extends the hold, then `insufficientTraffic` decides. The last step (100 %) is the promotion, after an
 * operator's approval when the model asks for one.
 */
export async function runCanary(run: PipelineRun, c: CanaryConfig, versionId: string): Promise<CanaryOutcome> {
  const ids = { runId: run.runId, model: run.input.model, versionId };
  const done: number[] = [];
  const checks: CanaryCheck[] = [];
  const rollback = async (reason: string): Promise<CanaryOutcome> => {
    await servingMoves.endCanary({ ...ids, reason });
    run.state.canary = null;
    return { outcome: 'rolled_back', reasons: [reason], steps: done, checks };
  };
  // The first version is compared with the incumbent when the model has one (the app's hosted model serves the
  // other subjects); without one it has nothing to be compared with, and the API nothing to serve the other
  // subjects with: it goes to production after the approval (if asked for) without traffic steps.
  const { production, incumbent } = await servingMoves.servingState({ model: run.input.model });
  const steps = production || incumbent ? c.steps : [];
  for (const percent of steps) {
    if (percent === 100) break;
    const { since } = await servingMoves.setCanary({ ...ids, percent });
    const canary: CanaryState = { versionId, percent, since, awaitingApproval: false, approval: null, last: null };
    run.state.canary = canary;
    for (let extension = 0; ; extension++) {
      await sleep(c.holdSeconds * 1000);
      const v = await servingMoves.compareCanary({ ...ids, since });
      checks.push({ ...v, percent, extension });
      canary.last = { verdict: v.verdict, reasons: v.reasons };
      if (v.verdict === 'fail')
        return rollback(`canary worse than production at ${percent} %: ${v.reasons.join('; ')}`);
      if (v.verdict === 'pass') break;
      if (extension >= c.maxExtensions) {
        if (c.insufficientTraffic === 'rollback') {
          return rollback(`too little canary traffic at ${percent} %: ${v.reasons.join('; ')}`);
        }
        log.warn('too little canary traffic; proceeding as configured', { percent, reasons: v.reasons });
        break;
      }
    }
    done.push(percent);
  }
  if (c.requireApproval) {
    const approval = await awaitApproval(run, c, versionId);
    if (!approval.approved) return rollback(approval.reason);
  }
  return {
    outcome: 'passed',
    reasons: production || incumbent ? [] : ['no production version yet: nothing to compare with, no traffic steps'],
    steps: done,
    checks,
  };
}

/**
 * Waits for an operator's `approve` update, or its timeout (`approvalTimeoutHours`: an answer that never comes is a
 * no). The status query and the stage search attribute (`<stage>:awaiting-approval`) show the wait.
 */
export async function awaitApproval(run: PipelineRun, c: CanaryConfig, versionId: string): Promise<Approval> {
  const canary = (run.state.canary ??= {
    versionId,
    percent: 0,
    since: new Date().toISOString(),
    awaitingApproval: false,
    approval: null,
    last: null,
  });
  canary.awaitingApproval = true;
  const stage = run.state.stage ?? 'canary';
  upsertSearchAttributes([{ key: STAGE_SEARCH_ATTRIBUTE, value: `${stage}:awaiting-approval` }]);
  const answered = await condition(() => canary.approval !== null, c.approvalTimeoutHours * 3600 * 1000);
  canary.awaitingApproval = false;
  upsertSearchAttributes([{ key: STAGE_SEARCH_ATTRIBUTE, value: stage }]);
  const a = canary.approval;
  if (!answered || !a) return { approved: false, reason: `no approval within ${c.approvalTimeoutHours} h` };
  return a.approved
    ? { approved: true, reason: `approved by ${a.by}` }
    : { approved: false, reason: `declined by ${a.by}${a.reason ? `: ${a.reason}` : ''}` };
}
