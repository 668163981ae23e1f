/**
 * Recognizers for the structured types. Each is called by the scanner at a position where its kind can start
 * (an '@', a dot between word characters, a run of digits, a colon next to hex digits, a keyword) and tries one
 * anchored regex there, then a cheap validator. Every quantifier is bounded, so a call costs at most a few dozen
 * steps whatever the text holds, and the whole scan stays linear.
 *
 * Each `…At` function pushes what it finds onto `out` and returns the index the scanner may skip to (the end of
 * the longest match), or the position it was given when nothing matched.
 */
import { PRIORITY, type Candidate } from './candidate';
import { classifyUrl } from './urls';
import {
  digitsOf,
  ibanLength,
  isCreditCard,
  isIbanValid,
  isIpv4,
  isIpv6,
  isNhsNumberValid,
  isSsnValid,
} from './validators';

export const isDigit = (c: number) => c >= 48 && c <= 57;
export const isAlnum = (c: number) => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const isLocalChar = (c: number) => isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45; // . _ % + -
const isDomainChar = (c: number) => isAlnum(c) || c === 46 || c === 45;
const isHandleChar = (c: number) => isAlnum(c) || c === 95 || c === 46;
const isHex = (c: number) => isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);

/** Text just before `start` (at most `n` characters), lowercased, for context cues. */
export function before(text: string, start: number, n: number): string {
  return text.slice(Math.max(0, start - n), start).toLowerCase();
}

/** An email around the '@' at `at`, or else an @handle starting there. */
export function emailOrHandleAt(text: string, at: number, out: Candidate[]): number {
  let s = at;
  while (s > 0 && at - s < 64 && isLocalChar(text.charCodeAt(s - 1))) s--;
  while (s < at && text.charCodeAt(s) === 46) s++; // a local part does not start with '.'
  let e = at + 1;
  while (e < text.length && e - at <= 253 && isDomainChar(text.charCodeAt(e))) e++;
  while (e > at + 1 && (text.charCodeAt(e - 1) === 46 || text.charCodeAt(e - 1) === 45)) e--;
  const domain = text.slice(at + 1, e);
  const dot = domain.lastIndexOf('.');
  const tldOk = dot > 0 && /^[A-Za-z]{2,24}$/.test(domain.slice(dot + 1)) && !domain.includes('..');
  if (s < at && tldOk) {
    out.push({ type: 'EMAIL', start: s, end: e, priority: PRIORITY.EMAIL });
    return e;
  }
  // A handle: '@' not glued to a word on its left, at least one letter, at most 30 characters.
  const prev = at > 0 ? text.charCodeAt(at - 1) : 32;
  if (isAlnum(prev) || prev === 95 || prev === 64) return at;
  let h = at + 1;
  while (h < text.length && h - at <= 30 && isHandleChar(text.charCodeAt(h))) h++;
  const next = h < text.length ? text.charCodeAt(h) : 32;
  while (h > at + 1 && text.charCodeAt(h - 1) === 46) h--;
  const name = text.slice(at + 1, h);
  if (name.length >= 2 && /[A-Za-z]/.test(name) && !isHandleChar(next) && next !== 64) {
    out.push({ type: 'SOCIAL_HANDLE', start: at, end: h, priority: PRIORITY.SOCIAL_HANDLE });
    return h;
  }
  return at;
}

// A host is labels separated by dots ending in a letters-only TLD, then an optional path. Each label must end at a
// dot, so the repetition is unambiguous.
const URL_RE =
  /(?:https?:\/\/)?(?:[a-z0-9](?:[a-z0-9-]{0,62})\.){1,6}[a-z]{2,24}(?::\d{1,5})?(?:[/?#][^\s<>"'`)\]}]{0,2000})?/iy;
const TRAILING_PUNCT = new Set([...`.,;:!?'"’)`].map((c) => c.charCodeAt(0)));
const isHostChar = (c: number) => isAlnum(c) || c === 45 || c === 46;

/** A URL through the dot at `dot` (which sits between two word characters). */
export function urlAt(text: string, dot: number, out: Candidate[]): number {
  let s = dot - 1;
  while (s > 0 && dot - s < 100 && isHostChar(text.charCodeAt(s - 1))) s--;
  while (s < dot && !isAlnum(text.charCodeAt(s))) s++;
  if (s >= 3 && text.startsWith('://', s - 3)) {
    const scheme = /https?$/i.exec(text.slice(Math.max(0, s - 8), s - 3));
    if (scheme) s = s - 3 - scheme[0].length;
  }
  const prev = s > 0 ? text.charCodeAt(s - 1) : 32;
  if (prev === 64 || prev === 95 || prev === 47) return dot;
  URL_RE.lastIndex = s;
  const m = URL_RE.exec(text);
  if (!m) return dot;
  let end = s + m[0].length;
  // Sentence punctuation after a URL is not part of it.
  while (end > s && TRAILING_PUNCT.has(text.charCodeAt(end - 1))) end--;
  const kind = classifyUrl(text.slice(s, end), text, s);
  if (kind === 'none') return dot;
  out.push({ type: kind === 'person' ? 'URL' : null, start: s, end, priority: PRIORITY.URL });
  return end;
}

const CARD_RE = /(?<![\d.,-])\d{4}(?:([ -]?)\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?|[ -]?\d{6}[ -]?\d{4,5})(?!\d)/y;
// ISBN-13s are 13 digits too; a valid one starting 978/979 is a book, not a card.
function isIsbn13(d: string): boolean {
  if (d.length !== 13 || !/^97[89]/.test(d)) return false;
  let sum = 0;
  for (let i = 0; i < 13; i++) sum += (d.charCodeAt(i) - 48) * (i % 2 === 0 ? 1 : 3);
  return sum % 10 === 0;
}

const NHS_CUE = /\bnhs\b|health (?:service|number)|chi number/;
const PHONE_CUE = /\b(?:call|ring|phone|mobile|cell|tel|text|whatsapp|contact|landline|fax|number)\b/;
const SSN_CUE = /\b(?:ssn|social security(?: number| no\.?)?|social)\b/;
const MADE_UP_CUE = /\b(?:made[- ]up|fake|example|dummy|pretend|imaginary|mod[- ]?11|checksum|check digit)\b/;
const NHS_RE = /(?<![\d.,/:-])\d{3}([ -]?)\d{3}\1\d{4}(?!\d)/y;
const SSN_RE = /(?<![\d.,/:-])\d{3}(?:([- ])\d{2}\1\d{4}(?![\d-])|\d{6}(?!\d))/y;
const IPV4_RE = /(?<![\d.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\.?\d)/y;
const VERSION_CUE = /(?:\bv|version|ver\.?|build|release|firmware|ios|android|windows|macos)\s*$/;

// International (+CC or 00CC), national with a trunk 0, and North American numbers. Group sizes are bounded and
// the digit count is checked afterwards.
const PHONE_RE = new RegExp(
  [
    String.raw`(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(0\))?(?:[ .-]?\(?\d{1,5}\)?){1,6}`,
    String.raw`\(0\d{1,4}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,3}`,
    String.raw`0\d{1,4}(?:[ .-]?\d{2,4}){1,4}`,
    String.raw`(?:1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}`,
  ].join('|'),
  'y',
);

/** A phone number starting at `i` (a digit, '+' or '('). */
function phoneAt(text: string, i: number, out: Candidate[]): number {
  const prev = i > 0 ? text.charCodeAt(i - 1) : 32;
  if (isAlnum(prev) || prev === 46 || prev === 47 || prev === 43 || prev === 44) return i;
  PHONE_RE.lastIndex = i;
  const m = PHONE_RE.exec(text);
  if (!m) return i;
  const end = i + m[0].length;
  const next = end < text.length ? text.charCodeAt(end) : 32;
  if (isAlnum(next) || next === 47) return i;
  if ((next === 46 || next === 58) && end + 1 < text.length && isDigit(text.charCodeAt(end + 1))) return i;
  const d = digitsOf(m[0]);
  const first = m[0][0];
  const intl = first === '+' || m[0].startsWith('00');
  const trunk = !intl && (first === '0' || m[0].startsWith('(0'));
  if (
    intl
      ? d.length < 9 || d.length > 15
      : trunk
        ? d.length < 9 || d.length > 12
        : d.length !== 10 && !(d.length === 11 && d[0] === '1')
  )
    return i;
  if (!intl && !trunk) {
    // North American numbers: area and exchange codes never start with 0 or 1.
    const nanp = d.length === 11 ? d.slice(1) : d;
    if (nanp[0] === '0' || nanp[0] === '1' || nanp[3] === '0' || nanp[3] === '1') return i;
    // Ten unseparated digits are more often an order or reference number than a phone, and "943 476 5919" with
    // spaces is how NHS and hospital numbers are written: both need the text to say it is a phone.
    if (/^\d{10,11}$|^\d{3} \d{3} \d{4}$/.test(m[0])) {
      const ctx = before(text, i, 40);
      if (!PHONE_CUE.test(ctx) || /\b(?:nhs|hospital|patient|chi)\b/.test(ctx)) return i;
    }
  }
  out.push({ type: 'PHONE', start: i, end, priority: PRIORITY.PHONE });
  return end;
}

/**
 * Checksum numbers, IPv4 and phones starting at `i`. `digits` is how many digits the number-like run starting
 * there holds (separators allowed), which rules most of them out without a regex.
 */
export function numbersAt(text: string, i: number, digits: number, out: Candidate[]): number {
  let end = i;
  const c = text.charCodeAt(i);
  if (isDigit(c)) {
    if (digits >= 13) {
      CARD_RE.lastIndex = i;
      const m = CARD_RE.exec(text);
      if (m && isCreditCard(m[0]) && !isIsbn13(digitsOf(m[0]))) {
        out.push({ type: 'CREDIT_CARD', start: i, end: i + m[0].length, priority: PRIORITY.CREDIT_CARD });
        end = Math.max(end, i + m[0].length);
      }
    }
    if (digits >= 10) {
      NHS_RE.lastIndex = i;
      const m = NHS_RE.exec(text);
      if (m && isNhsNumberValid(m[0])) {
        const ctx = before(text, i, 60);
        const nhsCue = NHS_CUE.test(ctx);
        if (nhsCue || !MADE_UP_CUE.test(ctx + text.slice(i, i + 60).toLowerCase())) {
          // A valid mod-11 number is an NHS number unless the text around it says it is a phone number.
          const priority = nhsCue || !PHONE_CUE.test(ctx) ? PRIORITY.NHS_NUMBER : PRIORITY.PHONE - 1;
          out.push({ type: 'NHS_NUMBER', start: i, end: i + m[0].length, priority });
          end = Math.max(end, i + m[0].length);
        }
      }
    }
    if (digits >= 9) {
      SSN_RE.lastIndex = i;
      const m = SSN_RE.exec(text);
      // Dashed ddd-dd-dddd is an SSN on its own; spaced or unformatted only after an SSN cue.
      if (m && isSsnValid(m[0]) && (m[1] === '-' || SSN_CUE.test(before(text, i, 40)))) {
        out.push({ type: 'SSN', start: i, end: i + m[0].length, priority: PRIORITY.SSN });
        end = Math.max(end, i + m[0].length);
      }
    }
    if (digits >= 4 && digits <= 12) {
      IPV4_RE.lastIndex = i;
      const m = IPV4_RE.exec(text);
      if (m && isIpv4(m[0]) && !VERSION_CUE.test(before(text, i, 12))) {
        out.push({ type: 'IP_ADDRESS', start: i, end: i + m[0].length, priority: PRIORITY.IP_ADDRESS });
        end = Math.max(end, i + m[0].length);
      }
    }
  }
  if (digits >= 9) end = Math.max(end, phoneAt(text, i, out));
  return end;
}

/** An IPv6 address through the colon at `colon`. */
const IPV6_RE = /[0-9a-f]{0,4}:(?:[0-9a-f]{0,4}:){1,6}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{0,4})/iy;
export function ipv6At(text: string, colon: number, out: Candidate[]): number {
  let start = colon;
  while (start > 0 && colon - start < 4 && isHex(text.charCodeAt(start - 1))) start--;
  const prev = start > 0 ? text.charCodeAt(start - 1) : 32;
  if (isAlnum(prev) || prev === 95 || prev === 58 || prev === 46) return colon;
  IPV6_RE.lastIndex = start;
  const m = IPV6_RE.exec(text);
  if (!m) return colon;
  const end = start + m[0].length;
  const next = end < text.length ? text.charCodeAt(end) : 32;
  if (isAlnum(next) || next === 95 || next === 58) return colon;
  // A bare "::" in prose is not an address: at least one group must hold a hex digit.
  if (!/[0-9a-f]/i.test(m[0]) || !isIpv6(m[0])) return colon;
  out.push({ type: 'IP_ADDRESS', start, end, priority: PRIORITY.IP_ADDRESS });
  return end;
}

/** An IBAN starting at `i` (two letters, two digits, then groups). */
const IBAN_HEAD_RE = /[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{1,4}){2,8}/y;
export function ibanAt(text: string, i: number, out: Candidate[]): number {
  const len = ibanLength(text.slice(i, i + 2));
  if (len === undefined) return i;
  IBAN_HEAD_RE.lastIndex = i;
  if (!IBAN_HEAD_RE.test(text)) return i;
  // Take exactly the country's length of characters; the greedy groups may have eaten a following word.
  let n = 0;
  let end = i;
  while (end < text.length && n < len) {
    const c = text.charCodeAt(end);
    if (isAlnum(c)) n++;
    else if (c !== 32) break;
    end++;
  }
  if (n !== len) return i;
  if (end < text.length && isAlnum(text.charCodeAt(end))) return i;
  if (!isIbanValid(text.slice(i, end))) return i;
  out.push({ type: 'IBAN', start: i, end, priority: PRIORITY.IBAN });
  return end;
}

const MONTHS = String.raw`(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)`;
const DATE = [
  String.raw`\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})`,
  String.raw`\d{4}[/.-]\d{1,2}[/.-]\d{1,2}`,
  String.raw`\d{1,2}(?:st|nd|rd|th)?(?:\s+of)?\s+${MONTHS}\.?(?:,?\s+\d{4})?`,
  String.raw`${MONTHS}\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?`,
].join('|');
const DOB_CUE = String.raw`(?:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date|birthday)(?:\s+(?:is|was|on)|['’]s)?(?:\s+(?:is|was|on))?(?:\s+the)?[\s:,(-]{0,3}`;
const DOB_RE = new RegExp(String.raw`${DOB_CUE}(${DATE})(?![\d/])`, 'iy');

/** A date of birth after the cue word starting at `i` ("born", "date of birth", "DOB", "birthday"); span = date. */
export function dateOfBirthAt(text: string, i: number, out: Candidate[]): number {
  DOB_RE.lastIndex = i;
  const m = DOB_RE.exec(text);
  if (!m) return i;
  const end = i + m[0].length;
  out.push({ type: 'DATE_OF_BIRTH', start: end - m[1]!.length, end, priority: PRIORITY.DATE_OF_BIRTH });
  return end;
}
