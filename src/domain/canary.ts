// The canary stage's judgement of one step: the canary's live numbers against production's over the same window.

export interface AliasStats {
  calls: number;
  errors: number;
  p95LatencyMs: number | null;
  /** Feedback on answers this alias gave, and how much of it was a thumbs-down or a rating of 2 or less. */
  feedback: number;
  thumbsDown: number;
  /** Calls with a JSON-schema format, and how many of their answers validated. */
  schemaChecked: number;
  schemaValid: number;
}

export interface CanaryMargins {
  errorRate: number;
  p95LatencyRatio: number;
  thumbsDownRate: number;
  schemaValidity: number;
}

export interface CanaryVerdict {
  verdict: 'pass' | 'fail' | 'insufficient';
  reasons: string[];
  canary: AliasStats;
  production: AliasStats;
}

const rate = (n: number, d: number) => (d > 0 ? n / d : 0);
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

/** Errors enough to roll a canary back before it has `minCalls`: a version that cannot answer is plainly broken. */
export const FAST_FAIL_ERRORS = 5;

/**
 * Worse beyond the margins on any of error rate, p95 latency, thumbs-down rate or schema validity is a fail (each
 * reason named), judged only on enough evidence: rates need `minCalls` canary calls (and the thumbs-down rate
 * `minFeedback` pieces of feedback), except that FAST_FAIL_ERRORS failed calls with an error rate beyond the
 * margin fail the canary at once. Too little evidence is `insufficient` (the step is held longer). Metrics
 * production has no data for are compared with zero (error and thumbs-down rates) or not at all (latency,
 * validity).
 */
export function judgeCanary(
  canary: AliasStats,
  production: AliasStats,
  margins: CanaryMargins,
  evidence: { minCalls: number; minFeedback: number },
): CanaryVerdict {
  const reasons: string[] = [];
  const enough = canary.calls >= evidence.minCalls;
  const errC = rate(canary.errors, canary.calls);
  const errP = rate(production.errors, production.calls);
  if (canary.calls > 0 && errC - errP > margins.errorRate && (enough || canary.errors >= FAST_FAIL_ERRORS)) {
    reasons.push(`error rate ${pct(errC)} vs production ${pct(errP)} (margin ${pct(margins.errorRate)})`);
  }
  if (
    enough &&
    canary.p95LatencyMs !== null &&
    production.p95LatencyMs !== null &&
    production.p95LatencyMs > 0 &&
    canary.p95LatencyMs > production.p95LatencyMs * margins.p95LatencyRatio
  ) {
    reasons.push(
      `p95 latency ${canary.p95LatencyMs.toFixed(0)} ms vs production ${production.p95LatencyMs.toFixed(0)} ms ` +
        `(at most ${margins.p95LatencyRatio}×)`,
    );
  }
  const tdC = rate(canary.thumbsDown, canary.feedback);
  const tdP = rate(production.thumbsDown, production.feedback);
  if (canary.feedback >= Math.max(1, evidence.minFeedback) && tdC - tdP > margins.thumbsDownRate) {
    reasons.push(`thumbs-down rate ${pct(tdC)} vs production ${pct(tdP)} (margin ${pct(margins.thumbsDownRate)})`);
  }
  if (enough && canary.schemaChecked > 0 && production.schemaChecked > 0) {
    const vC = rate(canary.schemaValid, canary.schemaChecked);
    const vP = rate(production.schemaValid, production.schemaChecked);
    if (vP - vC > margins.schemaValidity) {
      reasons.push(`schema validity ${pct(vC)} vs production ${pct(vP)} (margin ${pct(margins.schemaValidity)})`);
    }
  }
  if (reasons.length > 0) return { verdict: 'fail', reasons, canary, production };
  if (!enough) {
    return {
      verdict: 'insufficient',
      reasons: [`${canary.calls} canary calls in the window, ${evidence.minCalls} needed`],
      canary,
      production,
    };
  }
  return { verdict: 'pass', reasons: [], canary, production };
}
