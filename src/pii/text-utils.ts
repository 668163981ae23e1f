/** Character tests on UTF-16 code units: ASCII by comparison, the rest by a Unicode property regex. */

const LETTER_RE = /[\p{L}\p{M}]/u;

export function isLetterAt(text: string, i: number): boolean {
  if (i < 0 || i >= text.length) return false;
  const c = text.charCodeAt(i);
  if (c < 128) return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  if (c >= 0xd800 && c <= 0xdfff) return false; // astral (emoji, symbols); no names there
  return LETTER_RE.test(text[i]!);
}

export function isDigitAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return c >= 48 && c <= 57;
}

/** Letters, digits and the apostrophes that live inside words (don't, O'Connor). */
export function isWordCharAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return isDigitAt(text, i) || c === 39 || c === 0x2019 || isLetterAt(text, i);
}

export function isUpperAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) return c >= 65 && c <= 90;
  const ch = text[i]!;
  return ch !== ch.toLowerCase() && ch === ch.toUpperCase();
}

/**
 * The hash the scanner computes while it walks a word: lowercase code units, ’ read as '. Lists are hashed with the
 * same function, so a lookup needs no substring; a hit is confirmed on the string itself.
 */
export function wordHash(word: string): number {
  let h = 0;
  for (let i = 0; i < word.length; i++) h = (Math.imul(h, 31) + foldCode(word.charCodeAt(i))) | 0;
  return h;
}

/** Lowercase for hashing: ASCII by arithmetic, the rest through toLowerCase. */
export function foldCode(c: number): number {
  if (c < 128) return c >= 65 && c <= 90 ? c + 32 : c;
  if (c === 0x2019) return 39;
  return String.fromCharCode(c).toLowerCase().charCodeAt(0);
}

/**
 * A fixed-size open-addressing table from 32-bit word hashes to small flag sets: one probe in a typed array per
 * word, where a Map lookup costs several times more. Flags are non-zero; 0 reads as absent.
 */
export class HashFlags {
  private readonly keys: Int32Array;
  private readonly flags: Uint16Array;
  private readonly mask: number;

  constructor(capacityPow2 = 1 << 14) {
    this.keys = new Int32Array(capacityPow2);
    this.flags = new Uint16Array(capacityPow2);
    this.mask = capacityPow2 - 1;
  }

  add(hash: number, flag: number): void {
    let i = (Math.imul(hash, 0x9e3779b1) >>> 18) & this.mask;
    while (this.flags[i] !== 0 && this.keys[i] !== hash) i = (i + 1) & this.mask;
    this.keys[i] = hash;
    this.flags[i] = this.flags[i]! | flag;
  }

  get(hash: number): number {
    let i = (Math.imul(hash, 0x9e3779b1) >>> 18) & this.mask;
    for (;;) {
      const f = this.flags[i]!;
      if (f === 0) return 0;
      if (this.keys[i] === hash) return f;
      i = (i + 1) & this.mask;
    }
  }
}
