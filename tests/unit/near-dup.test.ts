import { describe, expect, it } from 'vitest';
import { dupCorpus } from '../../bench/lib/dup-corpus';
import {
  estimateJaccard,
  exactJaccard,
  lshParams,
  MinHasher,
  NearDuplicates,
  normaliseText,
  shingleHashes,
} from '../../src/dataset/near-dup';

describe('near duplicates', () => {
  it('normalises case, width and white space, and shingles words only', () => {
    expect(normaliseText('  Squats\tON\u00a0Monday ')).toBe('squats on monday');
    expect(normaliseText('ｆｕｌｌ width')).toBe('full width');
    expect([...shingleHashes('How many sets?', 3)]).toEqual([...shingleHashes('how  MANY sets', 3)]);
    expect(shingleHashes('!!! ...', 3)).toHaveLength(0);
    expect(shingleHashes('two words', 3)).toHaveLength(1);
  });

  it('chooses bands whose curve turns at the threshold, within the signature', () => {
    for (const threshold of [0.5, 0.7, 0.8, 0.9]) {
      const { bands, rows } = lshParams(threshold, 128);
      expect(bands * rows).toBeLessThanOrEqual(128);
      // The similarity at which a pair is found half the time lies near the threshold.
      const half = (1 - 0.5 ** (1 / bands)) ** (1 / rows);
      expect(Math.abs(half - threshold)).toBeLessThan(0.12);
    }
  });

  it('estimates Jaccard without bias, within the spread MinHash allows', () => {
    const hasher = new MinHasher(128, 7);
    const rows = [...dupCorpus({ seed: 3, rows: 4_000, planted: 0.3, editsPer100: [0, 40], shingleWords: 3 })];
    let errors = 0;
    let pairs = 0;
    for (const r of rows) {
      if (r.of === undefined) continue;
      const a = hasher.compute(shingleHashes(rows[r.of]!.text, 3)).slice();
      const b = hasher.compute(shingleHashes(r.text, 3));
      const j = r.jaccard!;
      const sd = Math.sqrt((j * (1 - j)) / 128);
      errors += estimateJaccard(a, b) - j;
      pairs++;
      expect(Math.abs(estimateJaccard(a, b) - j)).toBeLessThanOrEqual(4 * sd + 1e-9);
    }
    expect(pairs).toBeGreaterThan(1_000);
    expect(Math.abs(errors / pairs)).toBeLessThan(0.01); // no bias
  });

  it('finds planted paraphrases at the threshold and leaves distinct rows alone', () => {
    // Arrange: distinct rows with paraphrases of earlier rows planted among them, near and far.
    const rows = [...dupCorpus({ seed: 11, rows: 30_000, planted: 0.1, editsPer100: [0, 15], shingleWords: 3 })];
    const nd = new NearDuplicates({ threshold: 0.8 });

    // Act
    const flagged = rows.map((r) => nd.check(r.text) >= 0);

    // Assert: of the paraphrases clearly above the threshold (whose source was kept), nearly all are found (plain
    // MinHash LSH with datasketch's bands finds about 70 % at 0.85); of those below 0.7, almost none; of the
    // distinct rows, none.
    const keptSource = (r: (typeof rows)[number]) => r.of !== undefined && !flagged[r.of];
    const near = rows.flatMap((r, i) => (keptSource(r) && r.jaccard! >= 0.85 ? [i] : []));
    const far = rows.flatMap((r, i) => (keptSource(r) && r.jaccard! < 0.7 ? [i] : []));
    const distinct = rows.flatMap((r, i) => (r.of === undefined ? [i] : []));
    expect(near.length).toBeGreaterThan(300);
    expect(far.length).toBeGreaterThan(300);
    expect(near.filter((i) => flagged[i]).length / near.length).toBeGreaterThanOrEqual(0.97);
    expect(far.filter((i) => flagged[i]).length / far.length).toBeLessThanOrEqual(0.01);
    expect(distinct.filter((i) => flagged[i])).toEqual([]);
    expect(nd.kept + nd.found).toBe(rows.length);
  });

  it('checks templated rows, alike but not near duplicates, in bounded work', () => {
    // Arrange: one template, one slot: rows at Jaccard 0.6–0.8 of each other share bands without being duplicates
    const words = Array.from({ length: 4000 }, (_, i) => `word${i}`);
    const nd = new NearDuplicates();

    // Act
    const flagged = words.map(
      (w) => nd.check(`What should I do for my training on ${w} this week given my goals and my schedule?`) >= 0,
    );

    // Assert: verifications grow with rows x bands x the bucket cap, not with rows squared (about 8 million)
    expect(nd.verified).toBeLessThan(words.length * nd.bands * 16);
    expect(flagged.filter(Boolean).length).toBe(nd.found);
    expect(nd.kept + nd.found).toBe(words.length);
  });

  it('takes an exact copy, whatever its case and spacing, as a duplicate; a text with no word never', () => {
    const nd = new NearDuplicates();
    expect(nd.check('How many sets of squats should I do this week?')).toBe(-1);
    expect(nd.check('Is a rest day after leg day a good idea?')).toBe(-1);
    expect(nd.check('how many SETS of squats   should i do this week')).toBe(0);
    expect(nd.check('...')).toBe(-1);
    expect(nd.check('...')).toBe(-1);
  });

  it('refuses a threshold outside (0, 1]', () => {
    expect(() => new NearDuplicates({ threshold: 0 })).toThrow(/threshold/);
    expect(() => new NearDuplicates({ threshold: 1.5 })).toThrow(/threshold/);
  });

  it('computes exact Jaccard as the share of shingles in common', () => {
    expect(exactJaccard('a b c d', 'a b c d', 3)).toBe(1);
    expect(exactJaccard('a b c d', 'a b c e', 3)).toBeCloseTo(1 / 3);
  });
});
