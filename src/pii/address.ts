/**
 * Street addresses and postcodes. An address is a house number, a street name and a street type (English
 * "12 Baker Street", French "8 boulevard Saint-Michel", German/Dutch "Lindenstraße 14", "Keizersgracht 412",
 * Southern European "Via Roma 12"), with an optional flat and an optional town/state after a comma. A postcode is
 * never part of the address span: the labeling contract makes it its own entity, and only where it is a postcode
 * (right after an address, or after a postcode word), except UK and Irish forms, which are unambiguous.
 *
 * Every regex starts at a digit (house numbers are rare in chat) and looks back for the street words, so prose
 * without numbers costs one failed first-character check per position.
 */
import { PRIORITY, type Candidate } from './candidate';
import { before } from './patterns';
import { foldCode, HashFlags, isLetterAt, isUpperAt, wordHash } from './text-utils';

// prettier-ignore
const STREET_TYPES = [
  'street', 'st', 'road', 'rd', 'avenue', 'ave', 'av', 'lane', 'ln', 'drive', 'dr', 'close', 'way', 'court', 'ct',
  'place', 'pl', 'crescent', 'cres', 'terrace', 'tce', 'grove', 'gardens', 'gdns', 'boulevard', 'blvd', 'square',
  'sq', 'hill', 'park', 'row', 'mews', 'walk', 'parade', 'highway', 'hwy', 'circle', 'cir', 'trail', 'parkway',
  'pkwy', 'rise', 'view', 'green', 'vale', 'wharf', 'quay', 'embankment', 'broadway', 'causeway', 'alley', 'plaza',
  'loop', 'path', 'pike', 'ridge', 'heights', 'meadows', 'chase', 'gate', 'yard', 'crossing', 'wynd', 'brae',
  'hollow', 'approach', 'mall', 'circus', 'esplanade', 'promenade', 'market', 'end', 'fields', 'meadow', 'gardens',
];
const TYPES = [...new Set(STREET_TYPES)].sort((a, b) => b.length - a.length).join('|');
const WORD = String.raw`(?:\p{L}[\p{L}\p{M}'’.-]{0,30}|\d{1,3}(?:st|nd|rd|th))`;
const UNIT = String.raw`(?:flat|apt|apartment|unit|suite|ste)\.?\s{0,3}#?\s{0,2}\d{1,5}[a-z]?`;
const HOUSE = String.raw`\d(?<![\p{L}\d.,/:£$€-]\d)\d{0,4}[a-z]?(?:-\d{1,5}[a-z]?)?`;

/** English order: number, name words, type ("Flat 3, 45 Green Park Road"). */
const ENGLISH_RE = new RegExp(
  String.raw`(?<=((?:${UNIT},?\s{1,3})?))${HOUSE},?\s{1,3}(?:${WORD}\s{1,3}){1,4}?(?:${TYPES})\b(?:\s{1,2}(?:${TYPES})\b)?\.?(?:\s{1,3}(?:N|S|E|W|NE|NW|SE|SW)\b)?(?:,?\s{1,3}(?:${UNIT}|#\s?\d{1,5}[a-z]?))?`,
  'iuy',
);

// prettier-ignore
const FR_TYPES = ['rue', 'avenue', 'av', 'boulevard', 'bd', 'allée', 'allee', 'place', 'chemin', 'impasse', 'quai',
  'route', 'cours', 'square', 'passage', 'voie', 'faubourg', 'rue du faubourg'].join('|');
const NAME_WORD = String.raw`\p{L}[\p{L}\p{M}'’-]{0,30}`;
const LINK = String.raw`(?:de|du|des|la|le|les|d'|d’|l'|l’|del|della|di|da|do|dos|das|van|von|der|den|am|an)`;
/** French order: number, type, name ("27 rue des Lilas", "14 avenue Victor Hugo"). */
const FRENCH_RE = new RegExp(
  String.raw`${HOUSE}(?:\s?(?:bis|ter))?,?\s{1,2}(?:${FR_TYPES})\.?\s{1,2}(?:${LINK}\s?){0,2}${NAME_WORD}(?:\s(?:${LINK}\s?){0,2}\p{Lu}[\p{L}\p{M}'’-]{0,30}){0,3}`,
  'iuy',
);

// prettier-ignore
const SUFFIXES = ['straße', 'strasse', 'str.', 'weg', 'gasse', 'allee', 'platz', 'ring', 'damm', 'ufer', 'chaussee',
  'gracht', 'straat', 'laan', 'plein', 'kade', 'singel', 'dreef', 'steeg', 'dijk', 'markt', 'vej', 'gade', 'gatan',
  'vägen', 'gata', 'veien', 'gaten', 'katu', 'tie', 'utca'].join('|');
const PREFIXES = [
  'via',
  'viale',
  'piazza',
  'corso',
  'calle',
  'avenida',
  'avda',
  'rua',
  'plaza',
  'paseo',
  'carrer',
  'ulica',
  'ul',
  'largo',
  'travessa',
  'praça',
  'strada',
  'vicolo',
  'camino',
  'ronda',
].join('|');
/** Name then number: "Lindenstraße 14", "Keizersgracht 412", "Via Roma 12", "Calle de Alcalá 45". */
const NUMBER_LAST_RE = new RegExp(
  String.raw`(?<=((?:\p{Lu}[\p{L}\p{M}-]{0,40}(?:${SUFFIXES})|(?:${PREFIXES})\.?\s(?:${LINK}\s?){0,2}\p{Lu}[\p{L}\p{M}'’-]{1,30}(?:\s\p{Lu}[\p{L}\p{M}'’-]{1,30}){0,2}),?\s{1,2}))\d(?<![\p{L}\d.,/:-]\d)\d{0,3}[a-z]?(?:[-/]\d{1,4}[a-z]?)?(?![\d.,:]\d)`,
  'iuy',
);

const SUFFIX_END_RE = new RegExp(String.raw`(?:${SUFFIXES})$`, 'iu');
/** Words that start a street name in Southern and Eastern Europe; the scanner flags them. */
export const STREET_PREFIX_WORDS = PREFIXES.split('|');
const STREET_WORDS = new HashFlags(1 << 10);
for (const t of STREET_TYPES) STREET_WORDS.add(wordHash(t), 1);
for (const t of FR_TYPES.split('|')) STREET_WORDS.add(wordHash(t), 2);
const isAsciiAlnum = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const AHEAD_TYPE = 1;
const AHEAD_FRENCH = 2;
const AHEAD_CAPITAL = 4;

/**
 * What follows the house number at `i`, read without a regex: a street type within the next five words
 * (English order), a French street type as the first word, a capitalised or ordinal first word.
 */
function peekStreet(text: string, i: number, cueNear: boolean): number {
  let j = i;
  const n = Math.min(text.length, i + 80);
  while (j < n && j - i < 7 && isAsciiAlnum(text.charCodeAt(j))) j++; // the number itself (12, 12a)
  let flags = 0;
  for (let w = 0; w < 5 && j < n; w++) {
    while (j < n && (text[j] === ' ' || text[j] === ',' || text[j] === '-' || text[j] === '\u00a0')) j++;
    if (j >= n) break;
    const first = text.charCodeAt(j);
    if (
      w === 0 &&
      ((first >= 65 && first <= 90) || (first >= 48 && first <= 57) || (first >= 0xc0 && isUpperAt(text, j)))
    )
      flags |= AHEAD_CAPITAL;
    let h = 0;
    const w0 = j;
    while (j < n) {
      const c = text.charCodeAt(j);
      const ok = isAsciiAlnum(c) || c === 39 || c === 0x2019 || (c >= 0xc0 && isLetterAt(text, j));
      if (!ok) break;
      h = (Math.imul(h, 31) + (c >= 65 && c <= 90 ? c + 32 : c < 128 ? c : foldCode(c))) | 0;
      j++;
    }
    if (j === w0) break;
    const kind = STREET_WORDS.get(h);
    if ((kind & 1) !== 0) flags |= AHEAD_TYPE;
    if (w === 0 && (kind & 2) !== 0) flags |= AHEAD_FRENCH;
    // A lowercase first word with no address cue nearby: neither English ("12 baker street" needs "I live at")
    // nor French order can follow.
    if (w === 0 && (flags & (AHEAD_CAPITAL | AHEAD_FRENCH)) === 0 && !cueNear) return 0;
    if (text[j] === '.' && j + 1 < n && text[j + 1] !== ' ') break;
    if (text[j] === '.') j++;
  }
  return flags;
}

/**
 * The word before the number at `i` is a capitalised street name: a street suffix (Lindenstraße, Keizersgracht),
 * or a street prefix word a few words back (Via Roma, Calle de Alcalá), which the scanner reports as `prefixNear`.
 */
function streetBefore(text: string, i: number, prefixNear: boolean): boolean {
  if (prefixNear) return true;
  let j = i;
  while (j > 0 && j > i - 3 && (text[j - 1] === ' ' || text[j - 1] === ',' || text[j - 1] === '\u00a0')) j--;
  const e = j;
  while (j > 0 && (isLetterAt(text, j - 1) || text[j - 1] === '-' || text[j - 1] === '.')) j--;
  return e - j >= 4 && isUpperAt(text, j) && SUFFIX_END_RE.test(text.slice(j, e));
}
/** Words that make a lowercase street ("i live at 12 baker street") an address; the scanner flags them. */
export const ADDRESS_CUE_WORDS = [
  'live',
  'living',
  'lives',
  'lived',
  'address',
  'moved',
  'move',
  'moving',
  'staying',
  'stay',
  'deliver',
  'send',
  'ship',
  'post',
  'located',
  'based',
  'at',
  'house',
  'home',
  'flat',
  'apartment',
  'apt',
];
// Right before a lowercase street: "i live at", "my address is", "moved to", "deliver to", "home address:".
const ADDRESS_CUE =
  /\b(?:live|living|lives|lived|staying|stay|stayed|moved|move|moving|deliver|delivered|send|sent|ship|post|located|based|address|house|home|flat|apartment)\b(?:\s+(?:is|at|in|to|on|now))*[\s:]*$/;
const TOWN_WORD = String.raw`\p{Lu}[\p{L}\p{M}'’-]{1,30}(?![\p{L}\p{M}\d])`;
// A town, district or county: "Oldham", "Clontarf", "Dublin 3", "Co. Cork", "St Albans".
const TOWN = String.raw`(?:Co\.?\s|St\.?\s)?${TOWN_WORD}(?:\s${TOWN_WORD}){0,2}(?:\s\d{1,2}(?![\d\p{L}]))?`;
const TOWN_COMMA_RE = new RegExp(String.raw`^,\s{0,2}(${TOWN})`, 'u');
const US_STATES =
  'AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY';
const STATE_RE = new RegExp(String.raw`^,?\s{1,2}(?:${US_STATES})(?![A-Za-z0-9])`);
const NOT_TOWN = new Set(['I', 'The', 'We', 'My', 'And', 'But', 'So', 'It', 'He', 'She', 'They', 'You', 'Then']);

// UK (incl. GIR 0AA), US ZIP/ZIP+4 and EU five-digit, Dutch "1012 AB", Irish Eircode.
const UK_PC = String.raw`(?:GIR ?0AA|[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})`;
const EIRCODE = String.raw`(?:[AC-FHKNPRTV-Y]\d{2}|D6W) ?[0-9AC-FHKNPRTV-Y]{4}`;
const POSTCODE_ANY = String.raw`(?:${UK_PC}|${EIRCODE}|\d{5}(?:-\d{4})?|\d{4} ?[A-Z]{2}(?![A-Za-z])|\d{4}|\d{2}-\d{3})`;
const POSTCODE_AFTER_RE = new RegExp(String.raw`^(,?\s{0,2}(?:(${TOWN})\s{1,2})?)(${POSTCODE_ANY})(?![\p{L}\d])`, 'u');
// After an address the postcode may be written in lowercase ("london nw1 6xe").
const POSTCODE_AFTER_LOWER_RE = new RegExp(String.raw`^(,?\s{0,2})(${UK_PC}|${EIRCODE})(?![\p{L}\d])`, 'iu');
const UK_PC_STICKY = new RegExp(String.raw`${UK_PC}(?![\p{L}\d])`, 'uy');
const EIRCODE_STICKY = new RegExp(String.raw`${EIRCODE}(?![\p{L}\d])`, 'uy');
const POSTCODE_CUE_RE = new RegExp(
  String.raw`(?:post\s?code|postal\s+code|zip(?:\s*code)?|eircode|plz|code\s+postal|cap|postnummer)(?:['’]s)?(?:[\s:,=-]{0,3}(?:it['’]s|it\s+is|is|was|now|here)(?![\p{L}])){0,3}[\s:,=-]{0,3}(${POSTCODE_ANY})(?![\p{L}\d])`,
  'iuy',
);

function isCapitalised(word: string): boolean {
  const c = word[0];
  return c !== undefined && (c !== c.toLowerCase() || /\d/.test(c));
}

function lowerPostcode(s: string): RegExpExecArray | null {
  const m = POSTCODE_AFTER_LOWER_RE.exec(s);
  if (!m) return null;
  // Same groups as POSTCODE_AFTER_RE: [all, lead, town, code].
  const r = [m[0], m[1], undefined, m[2]] as unknown as RegExpExecArray;
  return r;
}

/** Town and state after the street (part of the address), then a postcode (its own entity). */
function finishAddress(text: string, start: number, streetEnd: number, out: Candidate[]): number {
  let end = streetEnd;
  for (let i = 0; i < 2; i++) {
    const t = TOWN_COMMA_RE.exec(text.slice(end, end + 70));
    if (!t || NOT_TOWN.has(t[1]!.split(' ')[0]!)) break;
    end += t[0].length;
  }
  const st = STATE_RE.exec(text.slice(end, end + 12));
  if (st) end += st[0].length;
  const pc = POSTCODE_AFTER_RE.exec(text.slice(end, end + 60)) ?? lowerPostcode(text.slice(end, end + 20));
  if (pc) {
    const town = pc[2];
    if (!town || !NOT_TOWN.has(town.split(' ')[0]!)) {
      const pcStart = end + pc[1]!.length;
      if (town) end += pc[1]!.trimEnd().length;
      out.push({ type: 'POSTCODE', start: pcStart, end: pcStart + pc[3]!.length, priority: PRIORITY.POSTCODE });
    }
  }
  out.push({ type: 'ADDRESS', start, end, priority: PRIORITY.ADDRESS });
  return end;
}

/** Addresses whose house number starts at `i` (English and French order) or ends the street (number last). */
export function addressesAt(
  text: string,
  i: number,
  out: Candidate[],
  cueNear: boolean,
  capitalBefore: boolean,
  prefixNear = false,
): number {
  let end = i;
  const ahead = peekStreet(text, i, cueNear);
  let m: RegExpExecArray | null = null;
  if ((ahead & AHEAD_TYPE) !== 0 && ((ahead & AHEAD_CAPITAL) !== 0 || ADDRESS_CUE.test(before(text, i, 40)))) {
    ENGLISH_RE.lastIndex = i;
    m = ENGLISH_RE.exec(text);
  }
  if (m) {
    const unit = m[1] ?? '';
    const start = i - unit.length;
    let streetEnd = i + m[0].length;
    // Capitalised street names stand alone; lowercase ones ("12 baker street") need an address cue before them.
    const nameWords = m[0].split(/[\s,]+/).slice(1);
    const capitalised = nameWords.every((w) => isCapitalised(w) || /^(?:N|S|E|W|NE|NW|SE|SW|#.*|\d.*)$/i.test(w));
    if (capitalised || ADDRESS_CUE.test(before(text, start, 40))) {
      if (/\.$/.test(m[0]) && !/\b(?:st|rd|ave|av|ln|dr|ct|pl|cres|tce|gdns|blvd|sq|hwy|cir|pkwy)\.$/i.test(m[0]))
        streetEnd--;
      end = Math.max(end, finishAddress(text, start, streetEnd, out));
    }
  }
  m = null;
  if ((ahead & AHEAD_FRENCH) !== 0) {
    FRENCH_RE.lastIndex = i;
    m = FRENCH_RE.exec(text);
  }
  if (m) end = Math.max(end, finishAddress(text, i, i + m[0].length, out));
  // Number last: only where the text before looks like a street (a suffix such as -straße, or a prefix word).
  m = null;
  if (capitalBefore && streetBefore(text, i, prefixNear)) {
    NUMBER_LAST_RE.lastIndex = i;
    m = NUMBER_LAST_RE.exec(text);
  }
  if (m) {
    const start = i - m[1]!.length;
    if (start === 0 || !/[\p{L}\p{M}]/u.test(text[start - 1]!))
      end = Math.max(end, finishAddress(text, start, i + m[0].length, out));
  }
  return end;
}

/** A UK postcode or an Eircode starting at the capital letter at `i`. */
export function postcodeAt(text: string, i: number, out: Candidate[]): number {
  UK_PC_STICKY.lastIndex = i;
  const uk = UK_PC_STICKY.exec(text);
  if (uk) {
    out.push({ type: 'POSTCODE', start: i, end: i + uk[0].length, priority: PRIORITY.POSTCODE });
    return i + uk[0].length;
  }
  EIRCODE_STICKY.lastIndex = i;
  const ie = EIRCODE_STICKY.exec(text);
  if (ie) {
    const suffix = ie[0].slice(-4);
    if (/\d/.test(suffix) && /[A-Z]/.test(suffix)) {
      out.push({ type: 'POSTCODE', start: i, end: i + ie[0].length, priority: PRIORITY.POSTCODE });
      return i + ie[0].length;
    }
  }
  return i;
}

/** A postcode after a postcode word starting at `i` ("postcode", "zip", "eircode", "PLZ"). */
export function postcodeAfterCueAt(text: string, i: number, out: Candidate[]): number {
  POSTCODE_CUE_RE.lastIndex = i;
  const m = POSTCODE_CUE_RE.exec(text);
  if (!m) return i;
  const end = i + m[0].length;
  out.push({ type: 'POSTCODE', start: end - m[1]!.length, end, priority: PRIORITY.POSTCODE });
  return end;
}
