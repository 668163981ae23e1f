/**
 * The score stage's decisions, pure: how far the judge agrees with people (on rows with a human signal, which
 * dataset/rows.ts turns into a score), whether its scores may filter, and the dataset quality report's parts.
 */

/** How far the judge's keep/drop agrees with people's on rows that have both. */
export interface Calibration {
  /** Rows with both a human signal and a judge score. */
  rows: number;
  accuracy: number | null;
  /** Cohen's kappa: agreement beyond chance; null when undefined (fewer than 2 rows, or one label only on both). */
  kappa: number | null;
  /** Of the rows the judge keeps, the share people keep. */
  precision: number | null;
  /** Of the rows people keep, the share the judge keeps. */
  recall: number | null;
}

export function calibrate(pairs: readonly { human: number; judge: number }[], threshold: number): Calibration {
  const n = pairs.length;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  for (const p of pairs) {
    const h = p.human >= threshold;
    const j = p.judge >= threshold;
    if (h && j) tp++;
    else if (!h && j) fp++;
    else if (h && !j) fn++;
    else tn++;
  }
  if (n === 0) return { rows: 0, accuracy: null, kappa: null, precision: null, recall: null };
  const accuracy = (tp + tn) / n;
  const chance = ((tp + fp) / n) * ((tp + fn) / n) + ((tn + fn) / n) * ((tn + fp) / n);
  return {
    rows: n,
    accuracy,
    kappa: n >= 2 && chance < 1 ? (accuracy - chance) / (1 - chance) : null,
    precision: tp + fp ? tp / (tp + fp) : null,
    recall: tp + fn ? tp / (tp + fn) : null,
  };
}

export interface CalibrationRule {
  /** Rows with both signals needed to trust (or distrust) the judge. */
  minRows: number;
  /** The least Cohen's kappa at which the judge may filter. */
  minKappa: number;
  /** With fewer rows than minRows: filter on the judge anyway, or keep every row. */
  whenUncalibrated: 'filter' | 'keep';
}

/** Whether the judge's scores may drop rows, and why (the run says so either way). */
export function judgeMayFilter(c: Calibration, rule: CalibrationRule): { filter: boolean; reason: string } {
  if (c.rows < rule.minRows) {
    const why = `${c.rows} rows have both a human signal and a judge score, fewer than the ${rule.minRows} calibration needs`;
    return rule.whenUncalibrated === 'filter'
      ? { filter: true, reason: `${why}: filtering on an uncalibrated judge (calibration.whenUncalibrated)` }
      : { filter: false, reason: `${why}: rows kept (calibration.whenUncalibrated)` };
  }
  if (c.kappa === null || c.kappa < rule.minKappa) {
    const k = c.kappa === null ? 'undefined' : c.kappa.toFixed(2);
    return {
      filter: false,
      reason: `the judge agrees with people at kappa ${k}, below ${rule.minKappa}: rows kept rather than trusting it`,
    };
  }
  return { filter: true, reason: `the judge agrees with people at kappa ${c.kappa.toFixed(2)} on ${c.rows} rows` };
}

/** Why the score stage leaves a row out. */
export type DropReason = 'lowScore' | 'tooShort' | 'tooLong' | 'wrongLanguage';

export interface LengthRule {
  minChars: number;
  maxChars: number;
}

/** A row's length and language problems, before any score: null when it passes. */
export function shapeProblem(
  chars: number,
  rule: LengthRule,
  language: { expected: string; detected: string | null } | null,
): DropReason | null {
  if (chars < rule.minChars) return 'tooShort';
  if (chars > rule.maxChars) return 'tooLong';
  // An undetermined language (too little text to tell) is not a wrong one.
  if (language && language.detected !== null && language.detected !== language.expected) return 'wrongLanguage';
  return null;
}

/** Scores in ten bins of 0.1 (1.0 in the last). */
export function histogram(scores: Iterable<number>): number[] {
  const bins = new Array<number>(10).fill(0);
  for (const s of scores) bins[Math.min(9, Math.max(0, Math.floor(s * 10)))]!++;
  return bins;
}

/** Per source: rows considered, kept, and dropped per reason. */
export type SourceTally = Record<string, { considered: number; kept: number } & Partial<Record<DropReason, number>>>;

export function tally(t: SourceTally, source: string, dropped: DropReason | null) {
  const s = (t[source] ??= { considered: 0, kept: 0 });
  s.considered++;
  if (dropped) s[dropped] = (s[dropped] ?? 0) + 1;
  else s.kept++;
}

/** The n best and n worst rows by score, as (interaction id, score, whose score), best first then worst first. */
export class Extremes {
  private best: { id: string; score: number; by: 'human' | 'judge' }[] = [];
  private worst: { id: string; score: number; by: 'human' | 'judge' }[] = [];
  constructor(private readonly n: number) {}

  add(row: { id: string; score: number; by: 'human' | 'judge' }) {
    this.best = keep([...this.best, row], (a, b) => b.score - a.score || a.id.localeCompare(b.id), this.n);
    this.worst = keep([...this.worst, row], (a, b) => a.score - b.score || a.id.localeCompare(b.id), this.n);
  }

  result() {
    return { best: this.best, worst: this.worst };
  }
}

const keep = <T>(rows: T[], order: (a: T, b: T) => number, n: number) => rows.sort(order).slice(0, n);
