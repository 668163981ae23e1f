/**
 * Checksums and structural rules that turn "looks like a number" into "is this kind of identifier". Each takes
 * the raw matched text (separators included) and is cheap enough to run on every candidate.
 */

/** Digits of `s` (ASCII only), everything else dropped. */
export function digitsOf(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) out += s[i];
  }
  return out;
}

/** Luhn (mod 10) over the digits of `s`; payment cards have 13–19 digits. */
export function isLuhnValid(s: string): boolean {
  const d = digitsOf(s);
  if (d.length < 2) return false;
  let sum = 0;
  let double = false;
  for (let i = d.length - 1; i >= 0; i--) {
    let v = d.charCodeAt(i) - 48;
    if (double) {
      v *= 2;
      if (v > 9) v -= 9;
    }
    sum += v;
    double = !double;
  }
  return sum % 10 === 0;
}

export function isCreditCard(s: string): boolean {
  const d = digitsOf(s);
  if (d.length < 13 || d.length > 19) return false;
  // All-same digits (0000 0000 0000 0000) pass Luhn but are placeholders, not cards.
  if (/^(\d)\1+$/.test(d)) return false;
  return isLuhnValid(d);
}

/** IBAN lengths by country (ISO 13616 registry). */
const IBAN_LENGTHS: Record<string, number> = {
  AD: 24,
  AE: 23,
  AL: 28,
  AT: 20,
  AZ: 28,
  BA: 20,
  BE: 16,
  BG: 22,
  BH: 22,
  BR: 29,
  BY: 28,
  CH: 21,
  CR: 22,
  CY: 28,
  CZ: 24,
  DE: 22,
  DK: 18,
  DO: 28,
  EE: 20,
  EG: 29,
  ES: 24,
  FI: 18,
  FO: 18,
  FR: 27,
  GB: 22,
  GE: 22,
  GI: 23,
  GL: 18,
  GR: 27,
  GT: 28,
  HR: 21,
  HU: 28,
  IE: 22,
  IL: 23,
  IQ: 23,
  IS: 26,
  IT: 27,
  JO: 30,
  KW: 30,
  KZ: 20,
  LB: 28,
  LC: 32,
  LI: 21,
  LT: 20,
  LU: 20,
  LV: 21,
  MC: 27,
  MD: 24,
  ME: 22,
  MK: 19,
  MR: 27,
  MT: 31,
  MU: 30,
  NL: 18,
  NO: 15,
  PK: 24,
  PL: 28,
  PS: 29,
  PT: 25,
  QA: 29,
  RO: 24,
  RS: 22,
  SA: 24,
  SC: 31,
  SE: 24,
  SI: 19,
  SK: 24,
  SM: 27,
  ST: 25,
  SV: 28,
  TL: 23,
  TN: 24,
  TR: 26,
  UA: 29,
  VA: 22,
  VG: 24,
  XK: 20,
};

/** Expected IBAN length for a two-letter country code, or undefined when the country issues none. */
export function ibanLength(country: string): number | undefined {
  return IBAN_LENGTHS[country.toUpperCase()];
}

/** ISO 7064 mod 97-10 over the IBAN with spaces removed; also checks the country's length. */
export function isIbanValid(s: string): boolean {
  const iban = s.replace(/[\s-]/g, '').toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(iban)) return false;
  if (IBAN_LENGTHS[iban.slice(0, 2)] !== iban.length) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const c = rearranged.charCodeAt(i);
    if (c >= 48 && c <= 57) rem = (rem * 10 + (c - 48)) % 97;
    else rem = (rem * 100 + (c - 55)) % 97; // A=10 … Z=35, always two digits
  }
  return rem === 1;
}

/** NHS number: 10 digits, weights 10..2 on the first nine, check = 11 − (sum mod 11); 10 means invalid. */
export function isNhsNumberValid(s: string): boolean {
  const d = digitsOf(s);
  if (d.length !== 10) return false;
  if (/^(\d)\1+$/.test(d)) return false;
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += (d.charCodeAt(i) - 48) * (10 - i);
  let check = 11 - (sum % 11);
  if (check === 11) check = 0;
  if (check === 10) return false;
  return check === d.charCodeAt(9) - 48;
}

/**
 * US SSN rules (SSA, post-2011 randomisation): area 001–899 except 666, group 01–99, serial 0001–9999.
 * The advertising number 078-05-1120 and the 987-65-432x range are never issued.
 */
export function isSsnValid(s: string): boolean {
  const d = digitsOf(s);
  if (d.length !== 9) return false;
  const area = Number(d.slice(0, 3));
  const group = Number(d.slice(3, 5));
  const serial = Number(d.slice(5));
  if (area === 0 || area === 666 || area >= 900) return false;
  if (group === 0 || serial === 0) return false;
  if (d === '078051120') return false;
  return true;
}

export function isIpv4(s: string): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (const p of parts) {
    if (p.length === 0 || p.length > 3 || !/^\d+$/.test(p)) return false;
    if (p.length > 1 && p[0] === '0') return false; // leading zeros read as octal by some parsers; not an address
    if (Number(p) > 255) return false;
  }
  return true;
}

/** RFC 4291 text forms: eight groups, one `::` compression, optional trailing dotted IPv4. Zone ids are not accepted. */
export function isIpv6(s: string): boolean {
  if (s.length < 2 || s.length > 45) return false;
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return false;
  let groups = 0;
  let body = s;
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    if (!isIpv4(tail)) return false;
    groups += 2;
    body = s.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::" ; "a:b::1.2.3.4" leaves "a:b::" ; "a:b:c:d:e:f:1.2.3.4" leaves "a:...:f:"
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  if (dbl !== -1) {
    const [left = '', right = ''] = body.split('::');
    const l = left === '' ? [] : left.split(':');
    const r = right === '' ? [] : right.split(':');
    for (const g of [...l, ...r]) if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return false;
    groups += l.length + r.length;
    return groups <= 7;
  }
  const parts = body.split(':');
  for (const g of parts) if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return false;
  groups += parts.length;
  return groups === 8;
}
