/** Character tests on UTF-16 code units: ASCII by comparison, the rest by a Unicode property regex. */

const LETTER_RE = /[\p{L}\p{M}]/u;

export function isLetterAt(text: string, i: number): boolean {
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
