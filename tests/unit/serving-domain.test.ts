import { describe, expect, it } from 'vitest';
import { judgeCanary, type AliasStats } from '../../src/domain/canary';
import { answerStats, gate, isRefusal, pairOutcome, quantile, styleRate, winRate } from '../../src/domain/evaluation';
import { compilePattern } from '../../src/llm/json-schema';
import { bucketOf, routesToCanary } from '../../src/domain/routing';

const stats = (over: Partial<AliasStats> = {}): AliasStats => ({
  calls: 100,
  errors: 0,
  p95LatencyMs: 200,
  feedback: 0,
  thumbsDown: 0,
  schemaChecked: 0,
  schemaValid: 0,
  ...over,
});
const MARGINS = { errorRate: 0.02, p95LatencyRatio: 1.5, thumbsDownRate: 0.05, schemaValidity: 0.02 };
const EVIDENCE = { minCalls: 20, minFeedback: 10 };
const THRESHOLDS = { maxLossRegression: 0, minWinRateLowerBound: 0.5, maxSchemaValidityDrop: 0 };

describe('pairwise judging', () => {
  it.each([
    ['A', 'B', 'win'],
    ['B', 'A', 'loss'],
    ['A', 'A', 'tie'], // the judge preferred whatever came first: position bias, not a preference
    ['B', 'B', 'tie'],
    ['tie', 'B', 'tie'],
    ['A', 'tie', 'tie'],
  ] as const)('a candidate judged %s first and %s second has a %s', (first, second, outcome) => {
    expect(pairOutcome(first, second)).toBe(outcome);
  });

  it('counts ties as half a win and gives a Wilson interval inside [0, 1]', () => {
    // Act
    const r = winRate(['win', 'win', 'tie', 'loss']);

    // Assert
    expect(r).toMatchObject({ pairs: 4, wins: 2, ties: 1, losses: 1, winRate: 0.625 });
    expect(r.ci95[0]).toBeGreaterThan(0);
    expect(r.ci95[0]).toBeLessThan(0.625);
    expect(r.ci95[1]).toBeGreaterThan(0.625);
    expect(r.ci95[1]).toBeLessThan(1);
  });

  it('is not certain after three wins, and narrows with more pairs', () => {
    // Act
    const three = winRate(['win', 'win', 'win']);
    const many = winRate(Array.from({ length: 300 }, () => 'win' as const));

    // Assert
    expect(three.winRate).toBe(1);
    expect(three.ci95[0]).toBeLessThan(0.5);
    expect(many.ci95[0]).toBeGreaterThan(0.98);
  });

  it('gives the whole range when nothing was judged', () => {
    expect(winRate([])).toMatchObject({ pairs: 0, ci95: [0, 1] });
  });
});

describe('answer statistics', () => {
  it.each([
    "I'm sorry, but I can't help with that.",
    'I cannot give medical advice.',
    'As an AI, I do not have feelings.',
    'Sure. Unfortunately, I am unable to open links.',
  ])('recognises the refusal %j', (text) => {
    expect(isRefusal(text)).toBe(true);
  });

  it.each(['Do 3 sets of 10 squats.', "Can't make it today? Try 10 minutes tomorrow.", 'Sorry to hear that! Rest.'])(
    'does not take %j for a refusal',
    (text) => {
      expect(isRefusal(text)).toBe(false);
    },
  );

  it('reports lengths, empties and the refusal rate', () => {
    // Act
    const s = answerStats(['abcd', '', 'ab', "I'm sorry, I can't."]);

    // Assert
    expect(s).toMatchObject({ answers: 4, empty: 1, refusals: 1, refusalRate: 0.25, medianChars: 3 });
    expect(quantile([1, 2, 3, 4, 5], 0.95)).toBeCloseTo(4.8);
  });
});

describe('the gate', () => {
  it('passes a candidate with lower loss and no judge', () => {
    // Act
    const g = gate({
      candidate: { loss: 1.2 },
      baseline: { loss: 1.5 },
      baselineName: 'production',
      judge: null,
      thresholds: THRESHOLDS,
    });

    // Assert
    expect(g.passed).toBe(true);
    expect(g.checks.map((c) => c.name)).toEqual(['loss']);
  });

  it('rejects a worse loss, a diverged loss, a weak win rate and lower schema validity, each with its reason', () => {
    // Act
    const worse = gate({
      candidate: { loss: 1.6, jsonValidRate: 0.8 },
      baseline: { loss: 1.5, jsonValidRate: 0.9 },
      baselineName: 'production',
      judge: winRate(['win', 'loss', 'tie', 'tie']),
      thresholds: THRESHOLDS,
    });
    const diverged = gate({
      candidate: { loss: Number.NaN },
      baseline: { loss: 1.5 },
      baselineName: 'base',
      judge: null,
      thresholds: THRESHOLDS,
    });

    // Assert
    expect(worse.passed).toBe(false);
    expect(worse.reasons).toHaveLength(3);
    expect(worse.reasons[0]).toMatch(/held-out loss 1\.6000 vs production 1\.5000/);
    expect(worse.reasons[1]).toMatch(/lower bound below 0\.5/);
    expect(worse.reasons[2]).toMatch(/JSON schema validity 80\.0 %/);
    expect(diverged).toMatchObject({ passed: false, reasons: ['candidate held-out loss is NaN'] });
  });

  it('holds a candidate to the baseline’s rate of answers in the house style, within maxStyleDrop', () => {
    // Act
    const base = { loss: 1.5, styleRate: 0 };
    const learned = gate({
      candidate: { loss: 1.2, styleRate: 0.9 },
      baseline: base,
      baselineName: 'base',
      judge: null,
      thresholds: THRESHOLDS,
    });
    const lost = gate({
      candidate: { loss: 1.2, styleRate: 0.5 },
      baseline: { loss: 1.5, styleRate: 0.9 },
      baselineName: 'production',
      judge: null,
      thresholds: { ...THRESHOLDS, maxStyleDrop: 0.2 },
    });

    // Assert
    expect(learned.passed).toBe(true);
    expect(learned.checks.find((c) => c.name === 'style')?.detail).toBe('answers in the style 90.0 % vs base 0.0 %');
    expect(lost.reasons).toEqual(['answers in the style 50.0 % vs production 90.0 % (lower by more than 20.0 points)']);
  });

  it('counts the answers a style pattern matches, trimmed, over the whole answer', () => {
    const style = compilePattern('^Plan: [^\\n]+\\nWhy: [^\\n]+$');

    expect(styleRate(['Plan: a\nWhy: b', '  Plan: a\nWhy: b\n', 'Plan: a', 'Sure! Plan: a\nWhy: b'], style)).toBe(0.5);
    expect(styleRate([], style)).toBeNull();
  });

  it('allows a loss regression up to the configured margin', () => {
    // Act
    const g = gate({
      candidate: { loss: 1.52 },
      baseline: { loss: 1.5 },
      baselineName: 'production',
      judge: null,
      thresholds: { ...THRESHOLDS, maxLossRegression: 0.05 },
    });

    // Assert
    expect(g.passed).toBe(true);
  });
});

describe('the canary verdict', () => {
  it('passes a canary as good as production', () => {
    expect(judgeCanary(stats(), stats(), MARGINS, EVIDENCE).verdict).toBe('pass');
  });

  it.each([
    ['error rate', stats({ errors: 5 }), /error rate 5\.0 %/],
    ['p95 latency', stats({ p95LatencyMs: 400 }), /p95 latency 400 ms vs production 200 ms/],
    ['thumbs-down rate', stats({ feedback: 10, thumbsDown: 3 }), /thumbs-down rate 30\.0 %/],
    ['schema validity', stats({ schemaChecked: 10, schemaValid: 8 }), /schema validity 80\.0 %/],
  ])('fails a canary worse on %s, saying so', (_what, canary, reason) => {
    // Arrange
    const production = stats({ feedback: 10, thumbsDown: 0, schemaChecked: 10, schemaValid: 10 });

    // Act
    const v = judgeCanary(canary, production, MARGINS, EVIDENCE);

    // Assert
    expect(v.verdict).toBe('fail');
    expect(v.reasons.join('; ')).toMatch(reason);
  });

  it('fails a canary at once on five failed calls, but not on fewer, nor on a first thumbs-down', () => {
    // Act
    const broken = judgeCanary(stats({ calls: 5, errors: 5 }), stats(), MARGINS, EVIDENCE);
    const unlucky = judgeCanary(stats({ calls: 2, errors: 2 }), stats(), MARGINS, EVIDENCE);
    const oneVoice = judgeCanary(stats({ feedback: 1, thumbsDown: 1 }), stats(), MARGINS, EVIDENCE);
    const quiet = judgeCanary(stats({ calls: 3 }), stats(), MARGINS, EVIDENCE);

    // Assert
    expect(broken.verdict).toBe('fail');
    expect(unlucky).toMatchObject({ verdict: 'insufficient', reasons: ['2 canary calls in the window, 20 needed'] });
    expect(oneVoice.verdict).toBe('pass');
    expect(quiet).toMatchObject({ verdict: 'insufficient', reasons: ['3 canary calls in the window, 20 needed'] });
  });
});

describe('canary routing', () => {
  it('is sticky per subject and spreads subjects evenly over 100 buckets', () => {
    // Arrange
    const subjects = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

    // Act
    const buckets = subjects.map((s) => bucketOf('fitcoach', s));
    const share = subjects.filter((s) => routesToCanary('fitcoach', s, 25)).length / subjects.length;

    // Assert
    expect(buckets).toEqual(subjects.map((s) => bucketOf('fitcoach', s)));
    expect(share).toBeGreaterThan(0.23);
    expect(share).toBeLessThan(0.27);
  });

  it('only ever moves subjects onto the canary as its share grows', () => {
    // Arrange
    const subjects = Array.from({ length: 2_000 }, (_, i) => `s${i}`);

    // Act
    const at = (p: number) => new Set(subjects.filter((s) => routesToCanary('m', s, p)));
    const [five, fifty] = [at(5), at(50)];

    // Assert
    for (const s of five) expect(fifty.has(s)).toBe(true);
    expect(at(0).size).toBe(0);
    expect(at(100).size).toBe(subjects.length);
  });
});
