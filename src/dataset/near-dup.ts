/**
 * Near-duplicate detection: MinHash signatures of word shingles, locality-sensitive hashing (LSH) over bands of
 * them to find candidates, and each candidate verified on the signatures: a text is a near duplicate of a text
 * kept before when their estimated Jaccard similarity (of shingle sets) reaches the threshold. Streaming: each text
 * is checked against every text kept before it and, unless it is a near duplicate of one, kept.
 *
 * Plain MinHash LSH (datasketch's MinHashLSH) takes a band collision as the verdict, with bands chosen to balance
 * false positives against false negatives: at a threshold of 0.8 with 128 functions it finds only 40 % of the
 * pairs at 0.8 and 69 % at 0.85, and takes a fifth of the pairs at 0.75. Here the bands are chosen for recall
 * (false negatives weigh 0.9), at most 12 of them, and the verification gives precision back.
 *
 * Written for the export of a million rows in a small worker, with no object per row: each kept text leaves the
 * low 4 bits of each signature value (numPerm / 2 bytes: b-bit MinHash, whose chance matches, 1 in 16, are
 * corrected for; at 0.8 its estimate spreads by 0.037 against 0.035 for full values), and its row number in one
 * slot of each band's open-addressing table (4 bytes, at most three quarters full). A probe compares the band's values of
 * the row found, then verifies on the whole signature. At a million kept rows: 64 MB of signatures and 96 MB of
 * tables (a table of 2^21 slots a band). Tested against planted paraphrases (tests/unit/near-dup.test.ts) and measured against datasketch
 * (bench/score.bench.ts).
 */

export interface NearDupOptions {
  /** Jaccard similarity at and above which two texts are duplicates. */
  threshold: number;
  /** Hash functions per signature. */
  numPerm: number;
  /** Words per shingle. */
  shingleWords: number;
  seed: number;
}

export const NEAR_DUP_DEFAULTS: NearDupOptions = { threshold: 0.8, numPerm: 128, shingleWords: 3, seed: 1 };

/** Text as duplicates are compared: Unicode-normalised (NFKC), lower case, runs of white space as one space. */
export function normaliseText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/gu, ' ').trim();
}

const WORD = /[\p{L}\p{N}]+/gu;

/** murmur3's finaliser: every input bit reaches every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over UTF-16 code units, finalised. */
function hashWord(w: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 0x01000193);
  return fmix32(h);
}

/**
 * The 32-bit hashes of a text's shingles: runs of `n` consecutive words of the normalised text (the whole text
 * when it has fewer words). Repeated shingles are kept (they do not change a minimum). Empty for a text with no
 * word.
 */
export function shingleHashes(text: string, n: number): Uint32Array {
  const words = normaliseText(text).match(WORD);
  if (!words) return new Uint32Array(0);
  const wh = words.map(hashWord);
  const count = Math.max(1, wh.length - n + 1);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    let h = 0x9e3779b9;
    for (let j = i; j < Math.min(i + n, wh.length); j++) h = fmix32((h ^ wh[j]!) + 0x7f4a7c15);
    out[i] = h;
  }
  return out;
}

/** MinHash with `numPerm` hash functions, each x -> fmix32(x ^ seed_i): one reused signature array. */
export class MinHasher {
  readonly signature: Uint32Array;
  private readonly seeds: Uint32Array;

  constructor(numPerm: number, seed: number) {
    this.signature = new Uint32Array(numPerm);
    this.seeds = new Uint32Array(numPerm);
    let s = seed >>> 0;
    for (let i = 0; i < numPerm; i++) {
      s = (s + 0x6d2b79f5) >>> 0; // mulberry32's step: distinct, well-spread seeds
      this.seeds[i] = fmix32(s);
    }
  }

  /** The signature of a set of shingle hashes, into `this.signature` (all 0xffffffff for an empty set). */
  compute(hashes: Uint32Array): Uint32Array {
    const sig = this.signature;
    const seeds = this.seeds;
    sig.fill(0xffffffff);
    for (let j = 0; j < hashes.length; j++) {
      const x = hashes[j]!;
      for (let i = 0; i < sig.length; i++) {
        const v = fmix32(x ^ seeds[i]!);
        if (v < sig[i]!) sig[i] = v;
      }
    }
    return sig;
  }
}

/** The share of equal positions of two signatures: an unbiased estimate of the sets' Jaccard similarity. */
export function estimateJaccard(a: Uint32Array, b: Uint32Array): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

/** The exact Jaccard similarity of two texts' shingle sets (for tests and the bench's ground truth). */
export function exactJaccard(a: string, b: string, n: number): number {
  const sa = new Set(shingleHashes(a, n));
  const sb = new Set(shingleHashes(b, n));
  if (!sa.size && !sb.size) return 1;
  let both = 0;
  for (const h of sa) if (sb.has(h)) both++;
  return both / (sa.size + sb.size - both);
}

/** P(a pair of similarity s shares a band) with `bands` bands of `rows` rows. */
const collision = (s: number, bands: number, rows: number) => 1 - (1 - s ** rows) ** bands;

function integrate(f: (x: number) => number, a: number, b: number): number {
  const steps = 200; // Simpson's rule: the curves are smooth, far finer than the choice needs
  const h = (b - a) / steps;
  let sum = f(a) + f(b);
  for (let i = 1; i < steps; i++) sum += f(a + i * h) * (i % 2 ? 4 : 2);
  return (sum * h) / 3;
}

/**
 * Bands and rows per band for a threshold: the (b, r) with b x r <= numPerm and b <= maxBands that minimise the
 * area of false positives below the threshold times `weights[0]` plus that of false negatives above it times
 * `weights[1]` (datasketch's rule, whose weights are 0.5 and 0.5 and bands unbounded).
 */
export function lshParams(
  threshold: number,
  numPerm: number,
  weights: [number, number] = [0.5, 0.5],
  maxBands = numPerm,
): { bands: number; rows: number } {
  let best = { bands: 1, rows: numPerm, error: Infinity };
  for (let b = 1; b <= Math.min(numPerm, maxBands); b++) {
    for (let r = 1; b * r <= numPerm; r++) {
      const fp = integrate((s) => collision(s, b, r), 0, threshold);
      const fn = integrate((s) => 1 - collision(s, b, r), threshold, 1);
      const error = weights[0] * fp + weights[1] * fn;
      if (error < best.error) best = { bands: b, rows: r, error };
    }
  }
  return { bands: best.bands, rows: best.rows };
}

/**
 * Rows kept per band bucket (the same band values). Rows of one template can share a band without being near
 * duplicates (Jaccard 0.6–0.8 shares a band of 9 values a fifth to four fifths of the time); with no cap every
 * later check would walk and verify all of them: quadratic. Past the cap a bucket takes no more rows, and a check
 * stops walking it.
 */
const BUCKET_CAP = 16;

/** Candidates are chosen for recall (the verification on the signatures gives precision back). */
const CANDIDATE_WEIGHTS: [number, number] = [0.1, 0.9];
const MAX_BANDS = 12;

/**
 * The low 4 bits of each value of each kept row's signature, two to a byte (numPerm / 2 bytes a row), in chunks of
 * 16 384 rows: growing never copies, nor holds two copies at once.
 */
class Signatures {
  private readonly chunks: Uint8Array[] = [];
  rows = 0;
  readonly width: number;
  static readonly CHUNK_ROWS = 16_384;

  constructor(numPerm: number) {
    this.width = numPerm >>> 1;
  }

  /** Appends a row's values (already cut to 4 bits). */
  push(nibbles: Uint8Array) {
    const slot = this.rows % Signatures.CHUNK_ROWS;
    if (slot === 0) this.chunks.push(new Uint8Array(Signatures.CHUNK_ROWS * this.width));
    const chunk = this.chunks[this.chunks.length - 1]!;
    const at = slot * this.width;
    for (let i = 0; i < this.width; i++) chunk[at + i] = nibbles[2 * i]! | (nibbles[2 * i + 1]! << 4);
    this.rows++;
  }

  /** Where a row's bytes are. */
  chunkOf(row: number): Uint8Array {
    return this.chunks[Math.floor(row / Signatures.CHUNK_ROWS)]!;
  }

  offsetOf(row: number): number {
    return (row % Signatures.CHUNK_ROWS) * this.width;
  }

  /** The 4-bit value at position `i` of a row. */
  at(row: number, i: number): number {
    const byte = this.chunkOf(row)[this.offsetOf(row) + (i >>> 1)]!;
    return i & 1 ? byte >>> 4 : byte & 0x0f;
  }

  get bytes(): number {
    return this.chunks.length * Signatures.CHUNK_ROWS * this.width;
  }
}

/** Row numbers (+1; 0 is an empty slot) in an open-addressing table, grown at three quarters full. */
class BandTable {
  slots = new Uint32Array(1024);
  mask = 1023;
  size = 0;

  add(row: number, hash: number) {
    if ((this.size + 1) * 4 > this.slots.length * 3) this.grow();
    this.place(row + 1, hash);
    this.size++;
  }

  private place(entry: number, hash: number) {
    let i = hash & this.mask;
    while (this.slots[i] !== 0) i = (i + 1) & this.mask;
    this.slots[i] = entry;
  }

  private grow() {
    const old = this.slots;
    const hashes = this.hashOf;
    this.slots = new Uint32Array(old.length * 2);
    this.mask = this.slots.length - 1;
    for (const entry of old) if (entry !== 0) this.place(entry, hashes(entry - 1));
  }

  /** The band hash of a kept row, for a rehash (set by the owner). */
  hashOf: (row: number) => number = () => 0;
}

/**
 * Streaming near-duplicate removal. `check(text)` answers the kept row (its number among the kept, from 0) the text
 * is a near duplicate of, or -1 when it is none and is now kept itself. A text with no word is never a near
 * duplicate (exact duplicates are someone else's job).
 */
export class NearDuplicates {
  readonly options: NearDupOptions;
  readonly bands: number;
  readonly rows: number;
  private readonly hasher: MinHasher;
  private readonly tables: BandTable[];
  private readonly sigs: Signatures;
  private readonly bandHashes: Uint32Array;
  /** Rows found with the checked text's exact band values, per band. */
  private readonly bucketSizes: Uint32Array;
  /** The text being checked: its signature's values cut to 4 bits, and packed two to a byte. */
  private readonly low: Uint8Array;
  private readonly packed: Uint8Array;
  /** Rows already verified for the text being checked (a row can collide in several bands). */
  private readonly seen = new Set<number>();
  kept = 0;
  found = 0;
  /** Candidates verified, and how many were not near duplicates after all. */
  verified = 0;
  rejected = 0;

  constructor(options: Partial<NearDupOptions> = {}) {
    this.options = { ...NEAR_DUP_DEFAULTS, ...options };
    const { threshold, numPerm, seed } = this.options;
    if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`threshold must be in (0, 1], not ${threshold}`);
    if (!Number.isInteger(numPerm) || numPerm < 16 || numPerm > 1024 || numPerm % 2)
      throw new RangeError(`numPerm must be an even whole number from 16 to 1024, not ${numPerm}`);
    ({ bands: this.bands, rows: this.rows } = lshParams(threshold, numPerm, CANDIDATE_WEIGHTS, MAX_BANDS));
    this.hasher = new MinHasher(numPerm, seed);
    this.sigs = new Signatures(numPerm);
    this.tables = Array.from({ length: this.bands }, (_, b) => {
      const t = new BandTable();
      t.hashOf = (row) => this.storedBandHash(row, b);
      return t;
    });
    this.bandHashes = new Uint32Array(this.bands);
    this.bucketSizes = new Uint32Array(this.bands);
    this.low = new Uint8Array(numPerm);
    this.packed = new Uint8Array(numPerm >>> 1);
  }

  check(text: string): number {
    const shingles = shingleHashes(text, this.options.shingleWords);
    if (!shingles.length) return -1;
    const sig = this.hasher.compute(shingles);
    const { numPerm, threshold } = this.options;
    for (let i = 0; i < numPerm; i++) this.low[i] = sig[i]! & 0x0f;
    for (let i = 0; i < numPerm >>> 1; i++) this.packed[i] = this.low[2 * i]! | (this.low[2 * i + 1]! << 4);
    this.seen.clear();
    this.bucketSizes.fill(0);
    for (let b = 0; b < this.bands; b++) {
      const from = b * this.rows;
      const hash = bandHash(this.low, from, this.rows, b);
      this.bandHashes[b] = hash;
      const t = this.tables[b]!;
      for (let i = hash & t.mask; t.slots[i] !== 0; i = (i + 1) & t.mask) {
        const row = t.slots[i]! - 1;
        let same = true;
        for (let r = from; r < from + this.rows; r++) {
          if (this.sigs.at(row, r) !== this.low[r]) {
            same = false;
            break;
          }
        }
        if (!same) continue;
        // A full bucket (templated rows alike in a band, not near duplicates) is not searched further.
        if (++this.bucketSizes[b]! > BUCKET_CAP) break;
        if (this.seen.has(row)) continue;
        this.seen.add(row);
        this.verified++;
        if (this.estimate(row) >= threshold) {
          this.found++;
          return row;
        }
        this.rejected++;
      }
    }
    const row = this.kept++;
    this.sigs.push(this.low);
    for (let b = 0; b < this.bands; b++) {
      // A bucket holds at most BUCKET_CAP rows: later ones that share the band are found through their other bands.
      if (this.bucketSizes[b]! < BUCKET_CAP) this.tables[b]!.add(row, this.bandHashes[b]!);
    }
    return -1;
  }

  /** Bytes held: signatures and band tables. */
  get bytes(): number {
    return this.sigs.bytes + this.tables.reduce((n, t) => n + t.slots.byteLength, 0);
  }

  /** Jaccard estimated from the 4-bit values, corrected for the 1 in 16 chance that two different values agree. */
  private estimate(row: number): number {
    const bytes = this.sigs.chunkOf(row);
    const width = this.sigs.width;
    const at = this.sigs.offsetOf(row);
    let same = 0;
    for (let i = 0; i < width; i++) {
      const x = bytes[at + i]! ^ this.packed[i]!;
      if ((x & 0x0f) === 0) same++;
      if ((x & 0xf0) === 0) same++;
    }
    return (same / (2 * width) - 1 / 16) / (1 - 1 / 16);
  }

  private storedBandHash(row: number, b: number): number {
    let h = 0x1b873593 ^ b;
    for (let r = b * this.rows; r < (b + 1) * this.rows; r++) h = Math.imul(h ^ this.sigs.at(row, r), 0x01000193);
    return fmix32(h);
  }
}

/** A band's values, hashed with its number (storedBandHash hashes a kept row's the same way). */
function bandHash(bytes: Uint8Array, from: number, rows: number, band: number): number {
  let h = 0x1b873593 ^ band;
  for (let r = from; r < from + rows; r++) h = Math.imul(h ^ bytes[r]!, 0x01000193);
  return fmix32(h);
}
