/**
 * Recognizers for the structured types: one bounded regex (or an indexOf scan) per kind, then a cheap validator.
 * Every quantifier is bounded or unambiguous, so each scan is linear in the text length whatever it contains.
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

const isDigit = (c: number) => c >= 48 && c <= 57;
const isAlnum = (c: number) => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const isLocalChar = (c: number) => isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45; // . _ % + -
const isDomainChar = (c: number) => isAlnum(c) || c === 46 || c === 45;
const isHandleChar = (c: number) => isAlnum(c) || c === 95 || c === 46;

/** Text just before `start` (at most `n` characters), lowercased, for context cues. */
export function before(text: string, start: number, n: number): string {
  return text.slice(Math.max(0, start - n), start).toLowerCase();
}

/** Emails and @handles, found from each '@' outwards: no regex can backtrack over a long local part. */
export function findEmailsAndHandles(text: string, out: Candidate[]): void {
  let at = text.indexOf('@');
  while (at !== -1) {
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
      at = text.indexOf('@', e);
      continue;
    }
    // A handle: '@' not glued to a word on its left, at least one letter, at most 30 characters.
    const prev = at > 0 ? text.charCodeAt(at - 1) : 32;
    if (!isAlnum(prev) && prev !== 95 && prev !== 64) {
      let h = at + 1;
      while (h < text.length && h - at <= 30 && isHandleChar(text.charCodeAt(h))) h++;
      const next = h < text.length ? text.charCodeAt(h) : 32;
      while (h > at + 1 && text.charCodeAt(h - 1) === 46) h--;
      const name = text.slice(at + 1, h);
      if (name.length >= 2 && /[A-Za-z]/.test(name) && !isHandleChar(next) && next !== 64) {
        out.push({ type: 'SOCIAL_HANDLE', start: at, end: h, priority: PRIORITY.SOCIAL_HANDLE });
      }
    }
    at = text.indexOf('@', at + 1);
  }
}

// A host is labels separated by dots ending in a letters-only TLD, then an optional path. Each label must end at a
// dot, so the repetition is unambiguous; the scan starts only where a dot sits between two word characters.
const URL_RE =
  /(?:https?:\/\/)?(?:[a-z0-9](?:[a-z0-9-]{0,62})\.){1,6}[a-z]{2,24}(?::\d{1,5})?(?:[/?#][^\s<>"'`)\]}]{0,2000})?/iy;
const isHostChar = (c: number) => isAlnum(c) || c === 45 || c === 46;

export function findUrls(text: string, out: Candidate[]): void {
  let dot = text.indexOf('.');
  while (dot !== -1) {
    if (dot === 0 || !isAlnum(text.charCodeAt(dot - 1)) || !isAlnum(text.charCodeAt(dot + 1))) {
      dot = text.indexOf('.', dot + 1);
      continue;
    }
    let s = dot - 1;
    while (s > 0 && dot - s < 260 && isHostChar(text.charCodeAt(s - 1))) s--;
    while (s < dot && !isAlnum(text.charCodeAt(s))) s++;
    if (s >= 3 && text.startsWith('://', s - 3)) {
      const scheme = /https?$/i.exec(text.slice(Math.max(0, s - 8), s - 3));
      if (scheme) s = s - 3 - scheme[0].length;
    }
    const prev = s > 0 ? text.charCodeAt(s - 1) : 32;
    URL_RE.lastIndex = s;
    const m = prev === 64 || prev === 95 || prev === 47 ? null : URL_RE.exec(text);
    if (!m) {
      dot = text.indexOf('.', dot + 1);
      continue;
    }
    let end = s + m[0].length;
    // Sentence punctuation after a URL is not part of it.
    while (end > s && /[.,;:!?'"’)]/.test(text[end - 1]!)) end--;
    const url = text.slice(s, end);
    const kind = classifyUrl(url, text, s);
    if (kind !== 'none') out.push({ type: kind === 'person' ? 'URL' : null, start: s, end, priority: PRIORITY.URL });
    dot = text.indexOf('.', Math.max(end, dot + 1));
  }
}

const CARD_RE = /\d(?<![\d.,-]\d)(?:\d{3}([ -]?)\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?|\d{3}[ -]?\d{6}[ -]?\d{4,5})(?![\d])/g;

export function findCards(text: string, out: Candidate[]): void {
  CARD_RE.lastIndex = 0;
  for (let m = CARD_RE.exec(text); m; m = CARD_RE.exec(text)) {
    if (isCreditCard(m[0]))
      out.push({ type: 'CREDIT_CARD', start: m.index, end: m.index + m[0].length, priority: PRIORITY.CREDIT_CARD });
  }
}

const IBAN_RE = /\d{2}(?<![A-Za-z0-9][A-Za-z]{2}\d{2})(?<=[A-Za-z]{2}\d{2})(?: ?[A-Za-z0-9]{1,4}){2,8}/g;

export function findIbans(text: string, out: Candidate[]): void {
  IBAN_RE.lastIndex = 0;
  for (let m = IBAN_RE.exec(text); m; m = IBAN_RE.exec(text)) {
    const start = m.index - 2;
    const len = ibanLength(text.slice(start, start + 2));
    if (len === undefined) continue;
    // Take exactly the country's length of characters; the greedy groups may have eaten a following word.
    let n = 0;
    let end = start;
    while (end < text.length && n < len) {
      const c = text.charCodeAt(end);
      if (isAlnum(c)) n++;
      else if (c !== 32) break;
      end++;
    }
    if (n !== len) continue;
    const next = end < text.length ? text.charCodeAt(end) : 32;
    if (isAlnum(next)) continue;
    if (isIbanValid(text.slice(start, end))) {
      out.push({ type: 'IBAN', start, end, priority: PRIORITY.IBAN });
      IBAN_RE.lastIndex = end;
    }
  }
}

const NHS_CUE = /\bnhs\b|health (?:service|number)|chi number/;
const PHONE_CUE = /\b(?:call|ring|phone|mobile|cell|tel|text|whatsapp|contact|landline|fax|number)\b/;
const SSN_CUE = /\b(?:ssn|social security(?: number| no\.?)?|social)\b/;

const NHS_RE = /\d(?<![\d.,/:-]\d)\d{2}([ -]?)\d{3}\1\d{4}(?![\d])/g;
const SSN_RE = /\d(?<![\d.,/:-]\d)(?:\d{2}([- ])\d{2}\1\d{4}(?![\d-])|\d{8}(?![\d]))/g;

export function findNhsAndSsn(text: string, out: Candidate[]): void {
  NHS_RE.lastIndex = 0;
  for (let m = NHS_RE.exec(text); m; m = NHS_RE.exec(text)) {
    if (!isNhsNumberValid(m[0])) continue;
    const ctx = before(text, m.index, 60);
    const nhsCue = NHS_CUE.test(ctx);
    // A valid mod-11 number is an NHS number unless the text around it says it is a phone number.
    const priority = nhsCue || !PHONE_CUE.test(ctx) ? PRIORITY.NHS_NUMBER : PRIORITY.PHONE - 1;
    out.push({ type: 'NHS_NUMBER', start: m.index, end: m.index + m[0].length, priority });
  }
  SSN_RE.lastIndex = 0;
  for (let m = SSN_RE.exec(text); m; m = SSN_RE.exec(text)) {
    if (!isSsnValid(m[0])) continue;
    // Dashed ddd-dd-dddd is an SSN on its own; spaced or unformatted only after an SSN cue.
    if (m[1] !== '-' && !SSN_CUE.test(before(text, m.index, 40))) continue;
    out.push({ type: 'SSN', start: m.index, end: m.index + m[0].length, priority: PRIORITY.SSN });
  }
}

const IPV4_RE = /\d(?<![\d.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\.?\d)/g;
const IPV6_RE = /[0-9a-f]{0,4}:(?:[0-9a-f]{0,4}:){1,6}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{0,4})/gi;
const VERSION_CUE = /(?:\bv|version|ver\.?|build|release)\s*$/;

export function findIps(text: string, out: Candidate[]): void {
  if (text.includes('.')) {
    IPV4_RE.lastIndex = 0;
    for (let m = IPV4_RE.exec(text); m; m = IPV4_RE.exec(text)) {
      if (!isIpv4(m[0]) || VERSION_CUE.test(before(text, m.index, 12))) continue;
      out.push({ type: 'IP_ADDRESS', start: m.index, end: m.index + m[0].length, priority: PRIORITY.IP_ADDRESS });
    }
  }
  if (text.includes(':')) {
    IPV6_RE.lastIndex = 0;
    for (let m = IPV6_RE.exec(text); m; m = IPV6_RE.exec(text)) {
      const start = m.index;
      const end = start + m[0].length;
      const prev = start > 0 ? text.charCodeAt(start - 1) : 32;
      const next = end < text.length ? text.charCodeAt(end) : 32;
      if (isAlnum(prev) || prev === 95 || prev === 58 || prev === 46 || isAlnum(next) || next === 95 || next === 58) {
        IPV6_RE.lastIndex = start + 1;
        continue;
      }
      if (/[0-9a-f]/i.test(m[0]) && isIpv6(m[0])) out.push({ type: 'IP_ADDRESS', start, end, priority: PRIORITY.IP_ADDRESS });
    }
  }
}

// International (+CC or 00CC), national with a trunk 0, and North American numbers. Group sizes are bounded and
// the digit count is checked afterwards.
const PHONE_RE = new RegExp(
  [
    String.raw`(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(0\))?(?:[ .-]?\(?\d{1,5}\)?){1,6}`,
    String.raw`\(0\d{1,4}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,3}`,
    String.raw`0\d{1,4}(?:[ .-]?\d{2,4}){1,4}`,
    String.raw`(?:1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}`,
  ].join('|'),
  'g',
);

export function findPhones(text: string, out: Candidate[]): void {
  PHONE_RE.lastIndex = 0;
  for (let m = PHONE_RE.exec(text); m; m = PHONE_RE.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    const prev = start > 0 ? text.charCodeAt(start - 1) : 32;
    const next = end < text.length ? text.charCodeAt(end) : 32;
    if (isAlnum(prev) || prev === 46 || prev === 47 || prev === 43) {
      PHONE_RE.lastIndex = start + 1;
      continue;
    }
    if (isAlnum(next) || next === 47) continue;
    if (next === 46 && end + 1 < text.length && isDigit(text.charCodeAt(end + 1))) continue;
    if (next === 58 && end + 1 < text.length && isDigit(text.charCodeAt(end + 1))) continue;
    const d = digitsOf(m[0]);
    const first = m[0][0];
    let ok: boolean;
    if (first === '+' || m[0].startsWith('00')) ok = d.length >= 9 && d.length <= 15;
    else if (first === '0' || m[0].startsWith('(0')) ok = d.length >= 9 && d.length <= 12;
    else ok = d.length === 10 || (d.length === 11 && d[0] === '1');
    if (!ok) continue;
    // North American numbers: area and exchange codes never start with 0 or 1.
    if (first !== '+' && first !== '0' && !m[0].startsWith('(0') && !m[0].startsWith('00')) {
      const nanp = d.length === 11 ? d.slice(1) : d;
      if (nanp[0] === '0' || nanp[0] === '1' || nanp[3] === '0' || nanp[3] === '1') continue;
      // Ten unseparated digits are more often an order or reference number than a phone.
      if (/^\d{10,11}$/.test(m[0]) && !PHONE_CUE.test(before(text, start, 40))) continue;
    }
    out.push({ type: 'PHONE', start, end, priority: PRIORITY.PHONE });
  }
}

const MONTHS = String.raw`(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)`;
const DATE = [
  String.raw`\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})`,
  String.raw`\d{4}[/.-]\d{1,2}[/.-]\d{1,2}`,
  String.raw`\d{1,2}(?:st|nd|rd|th)?(?:\s+of)?\s+${MONTHS}\.?(?:,?\s+\d{4})?`,
  String.raw`${MONTHS}\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?`,
].join('|');
const DOB_CUE = String.raw`\b(?:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date|birthday)(?:\s+(?:is|was|on)|['’]s)?(?:\s+(?:is|was|on))?(?:\s+the)?[\s:,(-]{0,3}`;
const DOB_RE = new RegExp(String.raw`${DOB_CUE}(${DATE})(?![\d/])`, 'gi');

export function findDatesOfBirth(text: string, out: Candidate[]): void {
  DOB_RE.lastIndex = 0;
  for (let m = DOB_RE.exec(text); m; m = DOB_RE.exec(text)) {
    const date = m[1]!;
    const end = m.index + m[0].length;
    out.push({ type: 'DATE_OF_BIRTH', start: end - date.length, end, priority: PRIORITY.DATE_OF_BIRTH });
  }
}
