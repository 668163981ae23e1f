import { createHash } from 'node:crypto';
import type { ShadowStats } from '../db/queries/shadow';
import type { ShadowConfig } from './model-config';

// The shadow stage's decisions, apart from its I/O: which calls the candidate answers in the background, and
// whether its answers so far let it go on to the canary.

/** Whether the call `id` is in the shadow's share (by its id, so the sample is even across subjects and time). */
export function inShadowShare(id: string, share: number): boolean {
  return createHash('sha256').update(id).digest().readUInt32BE(0) / 2 ** 32 < share;
}

export interface ShadowVerdict {
  verdict: 'pass' | 'fail' | 'insufficient';
  reasons: string[];
  pairs: number;
  dropped: number;
  errorRate: number;
  latencyRatio: number | null;
  /** Judged pairs and the candidate's win-or-tie rate with its 95 % (Wilson) interval; null without a judge. */
  winOrTie: { judged: number; rate: number; ci95: [number, number] } | null;
}

/** The Wilson score interval of k successes in n (95 %). */
export function wilson(k: number, n: number): [number, number] {
  if (n === 0) return [0, 1];
  const z = 1.959964;
  const p = k / n;
  const denom = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / denom;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

/** Errors enough to fail the shadow before it has `minPairs`: a candidate that cannot answer is plainly broken. */
export const SHADOW_FAST_FAIL_ERRORS = 5;

/**
 * Fails on an error rate beyond `maxErrorRate`, a p95 latency beyond `maxLatencyRatio` times production's on the
 * same calls, or (judged) a win-or-tie rate whose whole 95 % interval is below `minWinOrTie`; passes when none of
 * these holds on at least `minPairs` pairs (judged ones, with a judge) and, judged, the interval's lower bound
 * reaches `minWinOrTie`. Anything
 * in between is `insufficient`: the hold is extended, then `insufficientTraffic` decides.
 */
export function judgeShadow(s: ShadowStats, c: ShadowConfig, judged: boolean): ShadowVerdict {
  const pairs = s.answered + s.failed;
  const errorRate = pairs > 0 ? s.failed / pairs : 0;
  const latencyRatio =
    s.candidateP95Ms !== null && s.productionP95Ms !== null && s.productionP95Ms > 0
      ? s.candidateP95Ms / s.productionP95Ms
      : null;
  const n = s.wins + s.losses + s.ties;
  const winOrTie = judged ? { judged: n, rate: n ? (s.wins + s.ties) / n : 0, ci95: wilson(s.wins + s.ties, n) } : null;
  // With a judge, the evidence is judged pairs: pairs that came in while the judge worked wait for the next verdict.
  const enough = pairs >= c.minPairs && (!judged || n >= c.minPairs);
  const reasons: string[] = [];
  if (errorRate > c.maxErrorRate && (enough || s.failed >= SHADOW_FAST_FAIL_ERRORS)) {
    reasons.push(`candidate error rate ${pct(errorRate)} (at most ${pct(c.maxErrorRate)})`);
  }
  if (enough && latencyRatio !== null && latencyRatio > c.maxLatencyRatio) {
    reasons.push(`candidate p95 latency ${latencyRatio.toFixed(2)}× production's (at most ${c.maxLatencyRatio}×)`);
  }
  if (enough && winOrTie && n > 0 && winOrTie.ci95[1] < c.minWinOrTie) {
    reasons.push(
      `win-or-tie rate ${pct(winOrTie.rate)} (95 % CI ${pct(winOrTie.ci95[0])}–${pct(winOrTie.ci95[1])}) ` +
        `below ${pct(c.minWinOrTie)}`,
    );
  }
  const base = { pairs, dropped: s.dropped, errorRate, latencyRatio, winOrTie };
  if (reasons.length) return { verdict: 'fail', reasons, ...base };
  if (!enough) {
    const counted = judged ? `${n} judged shadow pairs` : `${pairs} shadow pairs`;
    return { verdict: 'insufficient', reasons: [`${counted}, ${c.minPairs} needed`], ...base };
  }
  if (winOrTie && winOrTie.ci95[0] < c.minWinOrTie) {
    return {
      verdict: 'insufficient',
      reasons: [
        `win-or-tie rate ${pct(winOrTie.rate)} on ${n} judged pairs: its 95 % interval ` +
          `(${pct(winOrTie.ci95[0])}–${pct(winOrTie.ci95[1])}) does not yet clear ${pct(c.minWinOrTie)}`,
      ],
      ...base,
    };
  }
  return { verdict: 'pass', reasons: [], ...base };
}
