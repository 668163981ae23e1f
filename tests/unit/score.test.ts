import { describe, expect, it } from 'vitest';
import { parseJudgement } from '../../src/activities/score';
import { humanScore } from '../../src/dataset/rows';
import {
  calibrate,
  Extremes,
  histogram,
  judgeMayFilter,
  shapeProblem,
  tally,
  type SourceTally,
} from '../../src/domain/score';

const RULE = { minRows: 4, minKappa: 0.4, whenUncalibrated: 'filter' as const };

describe('the score stage’s decisions', () => {
  it('takes people’s newest rating, else their newest thumb, as a score', () => {
    const at = (i: number) => `2025-01-01T00:00:0${i}.000Z`;
    expect(humanScore([])).toBeNull();
    expect(humanScore([{ thumbs: null, rating: 5, correction: null, createdAt: at(0) }])).toBe(1);
    expect(humanScore([{ thumbs: null, rating: 3, correction: null, createdAt: at(0) }])).toBe(0.5);
    expect(
      humanScore([
        { thumbs: 'up', rating: null, correction: null, createdAt: at(2) },
        { thumbs: null, rating: 1, correction: null, createdAt: at(1) },
      ]),
    ).toBe(1);
    expect(humanScore([{ thumbs: null, rating: null, correction: 'x', createdAt: at(0) }])).toBeNull();
  });

  it('measures the judge against people: accuracy, kappa, precision and recall of keep', () => {
    // 4 agree keep, 3 agree drop, 1 judge-keeps-people-drop, 2 judge-drops-people-keep
    const pairs = [
      ...Array.from({ length: 4 }, () => ({ human: 1, judge: 0.9 })),
      ...Array.from({ length: 3 }, () => ({ human: 0, judge: 0.1 })),
      { human: 0, judge: 0.8 },
      { human: 1, judge: 0.2 },
      { human: 0.75, judge: 0.5 },
    ];
    const c = calibrate(pairs, 0.7);
    expect(c.rows).toBe(10);
    expect(c.accuracy).toBeCloseTo(0.7);
    expect(c.precision).toBeCloseTo(4 / 5);
    expect(c.recall).toBeCloseTo(4 / 6);
    // chance agreement: P(judge keep) 0.5 x P(human keep) 0.6 + 0.5 x 0.4 = 0.5
    expect(c.kappa).toBeCloseTo((0.7 - 0.5) / (1 - 0.5));
  });

  it('has no kappa where it is undefined, and nothing at all without rows', () => {
    expect(calibrate([], 0.7)).toEqual({ rows: 0, accuracy: null, kappa: null, precision: null, recall: null });
    const same = calibrate(
      [
        { human: 1, judge: 1 },
        { human: 1, judge: 0.9 },
      ],
      0.7,
    );
    expect(same.kappa).toBeNull();
    expect(same.accuracy).toBe(1);
  });

  it('lets a judge filter only when it agrees with people enough, and says why either way', () => {
    const good = { rows: 30, accuracy: 0.9, kappa: 0.8, precision: 0.9, recall: 0.9 };
    const bad = { ...good, kappa: 0.1 };
    const thin = { ...good, rows: 2 };
    expect(judgeMayFilter(good, RULE)).toMatchObject({ filter: true, reason: expect.stringContaining('0.80') });
    expect(judgeMayFilter(bad, RULE)).toMatchObject({ filter: false, reason: expect.stringContaining('below 0.4') });
    expect(judgeMayFilter({ ...good, kappa: null }, RULE).filter).toBe(false);
    expect(judgeMayFilter(thin, RULE)).toMatchObject({ filter: true, reason: expect.stringContaining('uncalibrated') });
    expect(judgeMayFilter(thin, { ...RULE, whenUncalibrated: 'keep' })).toMatchObject({
      filter: false,
      reason: expect.stringContaining('rows kept'),
    });
  });

  it('drops rows by length and language, never for a language it cannot tell', () => {
    const rule = { minChars: 5, maxChars: 100 };
    expect(shapeProblem(3, rule, null)).toBe('tooShort');
    expect(shapeProblem(101, rule, null)).toBe('tooLong');
    expect(shapeProblem(50, rule, { expected: 'eng', detected: 'fra' })).toBe('wrongLanguage');
    expect(shapeProblem(50, rule, { expected: 'eng', detected: null })).toBeNull();
    expect(shapeProblem(50, rule, { expected: 'eng', detected: 'eng' })).toBeNull();
  });

  it('bins scores by tenths, 1.0 in the last bin, and tallies per source', () => {
    expect(histogram([0, 0.05, 0.7, 0.99, 1])).toEqual([2, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    const t: SourceTally = {};
    tally(t, 'api', null);
    tally(t, 'api', 'lowScore');
    tally(t, 'synthetic', 'tooShort');
    expect(t).toEqual({
      api: { considered: 2, kept: 1, lowScore: 1 },
      synthetic: { considered: 1, kept: 0, tooShort: 1 },
    });
  });

  it("reads the judge's 1–5 rating as a score in [0, 1], also from an answer cut short after it", () => {
    expect(parseJudgement('{"score": 5, "reason": "on topic"}')).toEqual({ score: 1, reason: 'on topic' });
    expect(parseJudgement('{"score": 2, "reason": "vague"}')).toEqual({ score: 0.25, reason: 'vague' });
    expect(parseJudgement('{"score"\n\t:\n 3\n,"reason": "unununun')).toEqual({ score: 0.5, reason: '' });
    expect(parseJudgement('{"score": 50, "reason": "x"}')).toBeNull();
    expect(parseJudgement('{"score": 4.5}')).toBeNull();
    expect(parseJudgement('not json')).toBeNull();
  });

  it('keeps the best and the worst rows by score', () => {
    const e = new Extremes(2);
    for (const [id, score] of [
      ['a', 0.5],
      ['b', 0.9],
      ['c', 0.1],
      ['d', 0.95],
      ['e', 0.2],
    ] as const)
      e.add({ id, score, by: 'judge' });
    expect(e.result().best.map((r) => r.id)).toEqual(['d', 'b']);
    expect(e.result().worst.map((r) => r.id)).toEqual(['c', 'e']);
  });
});
