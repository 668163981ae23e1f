import { describe, expect, it } from 'vitest';
import type { ShadowStats } from '../../src/db/queries/shadow';
import { shadowConfigSchema } from '../../src/domain/model-config';
import { inShadowShare, judgeShadow, wilson } from '../../src/domain/shadow';

const CONFIG = shadowConfigSchema.parse({ minPairs: 20, minWinOrTie: 0.5, maxErrorRate: 0.05, maxLatencyRatio: 2 });
const stats = (over: Partial<ShadowStats>): ShadowStats => ({
  answered: 0,
  failed: 0,
  dropped: 0,
  candidateP95Ms: 100,
  productionP95Ms: 100,
  wins: 0,
  losses: 0,
  ties: 0,
  ...over,
});

describe('judgeShadow', () => {
  it('passes a candidate that wins or ties most judged pairs, without errors, as fast as production', () => {
    const v = judgeShadow(stats({ answered: 40, wins: 12, ties: 22, losses: 6 }), CONFIG, true);
    expect(v.verdict).toBe('pass');
    expect(v.winOrTie!.rate).toBeCloseTo(34 / 40);
    expect(v.winOrTie!.ci95[0]).toBeGreaterThan(0.5);
  });

  it('fails a candidate that loses most judged pairs, naming the rate and its interval', () => {
    const v = judgeShadow(stats({ answered: 40, wins: 2, ties: 6, losses: 32 }), CONFIG, true);
    expect(v.verdict).toBe('fail');
    expect(v.reasons[0]).toMatch(/^win-or-tie rate 20\.0 % \(95 % CI .*\) below 50\.0 %$/);
  });

  it('fails on errors and on latency, each named', () => {
    const v = judgeShadow(stats({ answered: 30, failed: 5, candidateP95Ms: 500, productionP95Ms: 100 }), CONFIG, false);
    expect(v.verdict).toBe('fail');
    expect(v.reasons).toEqual([
      'candidate error rate 14.3 % (at most 5.0 %)',
      "candidate p95 latency 5.00× production's (at most 2×)",
    ]);
  });

  it('fails a candidate that cannot answer before it has the pairs', () => {
    expect(judgeShadow(stats({ failed: 5 }), CONFIG, false).verdict).toBe('fail');
  });

  it('holds on with too few pairs, or a judged interval that does not yet clear the bar', () => {
    expect(judgeShadow(stats({ answered: 5 }), CONFIG, false)).toMatchObject({
      verdict: 'insufficient',
      reasons: ['5 shadow pairs, 20 needed'],
    });
    // With a judge, pairs that came in while it worked are not evidence yet.
    expect(judgeShadow(stats({ answered: 40, wins: 3, ties: 2 }), CONFIG, true)).toMatchObject({
      verdict: 'insufficient',
      reasons: ['5 judged shadow pairs, 20 needed'],
    });
    const straddling = judgeShadow(stats({ answered: 20, wins: 5, ties: 7, losses: 8 }), CONFIG, true);
    expect(straddling.verdict).toBe('insufficient');
  });

  it('without a judge, passes on errors and latency alone', () => {
    expect(judgeShadow(stats({ answered: 25 }), CONFIG, false)).toMatchObject({ verdict: 'pass', winOrTie: null });
  });
});

describe('wilson', () => {
  it('is the whole range for no data and narrows around the rate', () => {
    expect(wilson(0, 0)).toEqual([0, 1]);
    const [lo, hi] = wilson(50, 100);
    expect(lo).toBeCloseTo(0.4038, 3);
    expect(hi).toBeCloseTo(0.5962, 3);
  });
});

describe('inShadowShare', () => {
  it('takes about the share asked for, the same way every time', () => {
    const ids = Array.from({ length: 4000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const taken = ids.filter((id) => inShadowShare(id, 0.25)).length;
    expect(taken / ids.length).toBeGreaterThan(0.22);
    expect(taken / ids.length).toBeLessThan(0.28);
    expect(ids.filter((id) => inShadowShare(id, 0.25)).length).toBe(taken);
    expect(ids.every((id) => inShadowShare(id, 1))).toBe(true);
  });
});
