import { MinHasher, NEAR_DUP_DEFAULTS, shingleHashes } from './near-dup';

/**
 * Keeps a dataset's validation rows free of near copies in train: evaluation on a row the model trained on (or on
 * a paraphrase of it) measures memory, not skill. The general near-duplicate pass (near-dup.ts) verifies on an
 * estimate and misses a few pairs at the threshold; this guard is exact where it matters.
 *
 * Build, then query: every validation row is added first, then each train row asks whether it is a near copy of
 * one. Candidates come from LSH bands of full 32-bit MinHash values, chosen so that a pair at the threshold shares
 * a band all but once in 10 000 (at 0.8 with 128 functions: 25 bands of 5, missing 1 pair in 20 000); each is then
 * verified on the exact Jaccard similarity of the two shingle sets, so a pair just under the threshold is never
 * taken for one over it, nor the other way round.
 *
 * Memory, per validation row: its distinct shingle hashes (4 bytes each, ~50 for a chat exchange) and 8 bytes a
 * band. At 100 000 validation rows (a tenth of a million): about 20 MB of shingles and 20 MB of bands.
 */
export class LeakGuard {
  private readonly hasher: MinHasher;
  readonly bands: number;
  readonly rows: number;
  private readonly shingleWords: number;
  /** Each validation row's distinct shingle hashes, sorted. */
  private readonly sets: Uint32Array[] = [];
  /** Per band: (band hash × 2^21 + row) of every row, sorted once the rows are in (exact in a double). */
  private entries: number[][] | null;
  private sealed: Float64Array[] | null = null;
  static readonly MAX_ROWS = 1 << 21;

  constructor(readonly threshold: number) {
    if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`threshold must be in (0, 1], not ${threshold}`);
    const { numPerm, seed, shingleWords } = NEAR_DUP_DEFAULTS;
    this.hasher = new MinHasher(numPerm, seed);
    this.shingleWords = shingleWords;
    ({ bands: this.bands, rows: this.rows } = recallBands(threshold, numPerm));
    this.entries = Array.from({ length: this.bands }, () => []);
  }

  /** Adds a validation row. */
  add(text: string): void {
    if (!this.entries) throw new Error('LeakGuard: a validation row added after the first train row was checked');
    if (this.sets.length >= LeakGuard.MAX_ROWS) throw new RangeError(`LeakGuard holds at most ${LeakGuard.MAX_ROWS}`);
    const set = distinctSorted(shingleHashes(text, this.shingleWords));
    if (!set.length) return; // a text with no word is nobody's near copy
    const row = this.sets.length;
    this.sets.push(set);
    const sig = this.hasher.compute(set);
    for (let b = 0; b < this.bands; b++) this.entries[b]!.push(bandHash(sig, b, this.rows) * LeakGuard.MAX_ROWS + row);
  }

  /** Whether a train row is a near copy (exact Jaccard at or above the threshold) of a validation row. */
  leaks(text: string): boolean {
    const bands = this.seal();
    if (!this.sets.length) return false;
    const set = distinctSorted(shingleHashes(text, this.shingleWords));
    if (!set.length) return false;
    const sig = this.hasher.compute(set);
    const tried = new Set<number>();
    for (let b = 0; b < this.bands; b++) {
      const t = bands[b]!;
      const lo = bandHash(sig, b, this.rows) * LeakGuard.MAX_ROWS;
      for (let i = lowerBound(t, lo); i < t.length && t[i]! < lo + LeakGuard.MAX_ROWS; i++) {
        const row = t[i]! - lo;
        if (tried.has(row)) continue;
        tried.add(row);
        if (jaccardSorted(set, this.sets[row]!) >= this.threshold) return true;
      }
    }
    return false;
  }

  private seal(): Float64Array[] {
    if (!this.sealed) {
      this.sealed = this.entries!.map((e) => Float64Array.from(e).sort());
      this.entries = null;
    }
    return this.sealed;
  }
}

/**
 * The most rows per band (fewest chance candidates) at which a pair at the threshold still shares one of the
 * bands numPerm allows with probability 0.9999 or more.
 */
export function recallBands(threshold: number, numPerm: number): { bands: number; rows: number } {
  for (let rows = numPerm; rows >= 1; rows--) {
    const bands = Math.floor(numPerm / rows);
    if (1 - (1 - threshold ** rows) ** bands >= 0.9999) return { bands, rows };
  }
  return { bands: numPerm, rows: 1 };
}

/** A band's `rows` values hashed to 32 bits. */
function bandHash(sig: Uint32Array, band: number, rows: number): number {
  let h = 0x811c9dc5 ^ band;
  for (let i = band * rows; i < (band + 1) * rows; i++) {
    h = Math.imul(h ^ sig[i]!, 0x01000193);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

function distinctSorted(hashes: Uint32Array): Uint32Array {
  const s = Uint32Array.from(hashes).sort();
  let n = 0;
  for (let i = 0; i < s.length; i++) if (i === 0 || s[i] !== s[i - 1]) s[n++] = s[i]!;
  return s.slice(0, n);
}

/** The Jaccard similarity of two sorted sets of distinct values. */
function jaccardSorted(a: Uint32Array, b: Uint32Array): number {
  let i = 0;
  let j = 0;
  let both = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      both++;
      i++;
      j++;
    } else if (a[i]! < b[j]!) i++;
    else j++;
  }
  return both / (a.length + b.length - both);
}

function lowerBound(xs: Float64Array, x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
