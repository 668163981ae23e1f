// The evaluate stage's numbers and its gate: pure functions over what the trainer and the judge produced.

/** One judge verdict: which of the two answers shown (A first, B second) is better. */
export type Verdict = 'A' | 'B' | 'tie';
export type PairOutcome = 'win' | 'loss' | 'tie';

/**
 * A pair judged in both orders (candidate as A, then candidate as B): the candidate wins only if the judge prefers
 * it both times, loses only if it prefers the other both times; anything else (a tie, or a judge that changes its
 * mind when the order changes, i.e. position bias) is a tie.
 */
export function pairOutcome(candidateFirst: Verdict, candidateSecond: Verdict): PairOutcome {
  if (candidateFirst === 'A' && candidateSecond === 'B') return 'win';
  if (candidateFirst === 'B' && candidateSecond === 'A') return 'loss';
  return 'tie';
}

export interface WinRate {
  pairs: number;
  wins: number;
  losses: number;
  ties: number;
  /** (wins + ties / 2) / pairs */
  winRate: number;
  /** 95 % Wilson score interval of the win rate. */
  ci95: [number, number];
}

/**
 * The candidate's win rate with a 95 % confidence interval. A tie counts half a win; the interval is Wilson's
 * score interval on that rate over the pairs, which stays inside [0, 1] and is not overconfident for a handful of
 * pairs or a rate at 0 or 1 (the normal approximation would claim certainty after three wins).
 */
export function winRate(outcomes: readonly PairOutcome[]): WinRate {
  const n = outcomes.length;
  const wins = outcomes.filter((o) => o === 'win').length;
  const losses = outcomes.filter((o) => o === 'loss').length;
  const ties = n - wins - losses;
  if (n === 0) return { pairs: 0, wins, losses, ties, winRate: 0.5, ci95: [0, 1] };
  const p = (wins + ties / 2) / n;
  const z = 1.959964;
  const denom = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / denom;
  return { pairs: n, wins, losses, ties, winRate: p, ci95: [Math.max(0, centre - half), Math.min(1, centre + half)] };
}

// Refusals and deflections, in the phrasing chat models use; matched at the start of an answer or of a sentence.
const REFUSAL =
  /(^|[.!?]\s+)(i('m| am) (sorry|afraid|unable|not able)|i (can(no|')t|won't|will not|must decline)|sorry, (but )?i|as an ai\b|i('m| am) (just )?an ai\b|unfortunately,? i (can(no|')t|am unable))/i;

export function isRefusal(text: string): boolean {
  return REFUSAL.test(text.trim());
}

export interface AnswerStats {
  answers: number;
  meanChars: number;
  medianChars: number;
  p95Chars: number;
  empty: number;
  refusals: number;
  refusalRate: number;
}

export function answerStats(texts: readonly string[]): AnswerStats {
  const lengths = texts.map((t) => t.length).sort((a, b) => a - b);
  const n = lengths.length;
  const refusals = texts.filter(isRefusal).length;
  return {
    answers: n,
    meanChars: n ? lengths.reduce((a, b) => a + b, 0) / n : 0,
    medianChars: n ? quantile(lengths, 0.5) : 0,
    p95Chars: n ? quantile(lengths, 0.95) : 0,
    empty: texts.filter((t) => t.trim() === '').length,
    refusals,
    refusalRate: n ? refusals / n : 0,
  };
}

/** The q-quantile of sorted numbers, by linear interpolation between closest ranks. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export interface GateInput {
  candidate: { loss: number | null; jsonValidRate?: number | null; styleRate?: number | null };
  baseline: { loss: number | null; jsonValidRate?: number | null; styleRate?: number | null };
  baselineName: 'production' | 'base';
  judge: WinRate | null;
  thresholds: {
    maxLossRegression: number;
    minWinRateLowerBound: number;
    maxSchemaValidityDrop: number;
    /** Absent: 0. */
    maxStyleDrop?: number;
  };
}

export interface GateCheck {
  name: 'loss' | 'win_rate' | 'schema_validity' | 'style';
  passed: boolean;
  detail: string;
}

export interface GateResult {
  passed: boolean;
  checks: GateCheck[];
  /** The failed checks' details: why a rejected candidate was rejected. */
  reasons: string[];
}

/**
 * The gates: held-out loss not worse than the baseline's (by more than maxLossRegression); with a judge, the win
 * rate's 95 % lower bound at least minWinRateLowerBound; with an output schema, JSON validity not lower (by more
 * than maxSchemaValidityDrop); with a house style, the rate of answers in it not lower (by more than maxStyleDrop).
 * A loss that is missing or not a number fails: a diverged model must not pass.
 */
export function gate(input: GateInput): GateResult {
  const checks: GateCheck[] = [];
  const { candidate: c, baseline: b, thresholds: t } = input;
  if (b.loss === null && c.loss === null) {
    checks.push({ name: 'loss', passed: true, detail: 'no validation rows: loss not compared' });
  } else if (c.loss === null || !Number.isFinite(c.loss)) {
    checks.push({ name: 'loss', passed: false, detail: `candidate held-out loss is ${String(c.loss)}` });
  } else if (b.loss === null || !Number.isFinite(b.loss)) {
    checks.push({ name: 'loss', passed: true, detail: `${input.baselineName} has no held-out loss to compare` });
  } else {
    const passed = c.loss <= b.loss + t.maxLossRegression;
    checks.push({
      name: 'loss',
      passed,
      detail: `held-out loss ${c.loss.toFixed(4)} vs ${input.baselineName} ${b.loss.toFixed(4)}${
        passed ? '' : ` (worse by more than ${t.maxLossRegression})`
      }`,
    });
  }
  if (input.judge) {
    const j = input.judge;
    const passed = j.pairs > 0 && j.ci95[0] >= t.minWinRateLowerBound;
    checks.push({
      name: 'win_rate',
      passed,
      detail: `win rate ${j.winRate.toFixed(3)} (95 % CI ${j.ci95[0].toFixed(3)}–${j.ci95[1].toFixed(3)}, ${j.wins}/${
        j.ties
      }/${j.losses} W/T/L over ${j.pairs} pairs)${passed ? '' : `; lower bound below ${t.minWinRateLowerBound}`}`,
    });
  }
  const cv = c.jsonValidRate;
  const bv = b.jsonValidRate;
  if (typeof cv === 'number' && typeof bv === 'number') {
    const passed = cv >= bv - t.maxSchemaValidityDrop;
    checks.push({
      name: 'schema_validity',
      passed,
      detail: `JSON schema validity ${(cv * 100).toFixed(1)} % vs ${input.baselineName} ${(bv * 100).toFixed(1)} %`,
    });
  }
  const cs = c.styleRate;
  const bs = b.styleRate;
  if (typeof cs === 'number' && typeof bs === 'number') {
    const drop = t.maxStyleDrop ?? 0;
    const passed = cs >= bs - drop;
    checks.push({
      name: 'style',
      passed,
      detail: `answers in the style ${(cs * 100).toFixed(1)} % vs ${input.baselineName} ${(bs * 100).toFixed(1)} %${
        passed ? '' : ` (lower by more than ${(drop * 100).toFixed(1)} points)`
      }`,
    });
  }
  const reasons = checks.filter((x) => !x.passed).map((x) => x.detail);
  return { passed: reasons.length === 0, checks, reasons };
}

/** Whether an answer is in the house style: the pattern matched against the whole answer, trimmed. */
export const inStyle = (answer: string, style: { test(s: string): boolean }): boolean => style.test(answer.trim());

/** The share of answers in the style (null for no answers). */
export function styleRate(answers: readonly string[], style: { test(s: string): boolean }): number | null {
  if (answers.length === 0) return null;
  return answers.filter((a) => inStyle(a, style)).length / answers.length;
}
