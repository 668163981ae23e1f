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
  'giu',
);

// prettier-ignore
const FR_TYPES = ['rue', 'avenue', 'av', 'boulevard', 'bd', 'allée', 'allee', 'place', 'chemin', 'impasse', 'quai',
  'route', 'cours', 'square', 'passage', 'voie', 'faubourg', 'rue du faubourg'].join('|');
const NAME_WORD = String.raw`\p{L}[\p{L}\p{M}'’-]{0,30}`;
const LINK = String.raw`(?:de|du|des|la|le|les|d'|d’|l'|l’|del|della|di|da|do|dos|das|van|von|der|den|am|an)`;
/** French order: number, type, name ("27 rue des Lilas", "14 avenue Victor Hugo"). */
const FRENCH_RE = new RegExp(
  String.raw`${HOUSE}(?:\s?(?:bis|ter))?,?\s{1,2}(?:${FR_TYPES})\.?\s{1,2}(?:${LINK}\s?){0,2}${NAME_WORD}(?:\s(?:${LINK}\s?){0,2}\p{Lu}[\p{L}\p{M}'’-]{0,30}){0,3}`,
  'giu',
);

// prettier-ignore
const SUFFIXES = ['straße', 'strasse', 'str.', 'weg', 'gasse', 'allee', 'platz', 'ring', 'damm', 'ufer', 'chaussee',
  'gracht', 'straat', 'laan', 'plein', 'kade', 'singel', 'dreef', 'steeg', 'dijk', 'markt', 'vej', 'gade', 'gatan',
  'vägen', 'gata', 'veien', 'gaten', 'katu', 'tie', 'utca'].join('|');
const PREFIXES = ['via', 'viale', 'piazza', 'corso', 'calle', 'avenida', 'avda', 'rua', 'plaza', 'paseo', 'carrer',
  'ulica', 'ul', 'largo', 'travessa', 'praça', 'strada', 'vicolo', 'camino', 'ronda'].join('|');
/** Name then number: "Lindenstraße 14", "Keizersgracht 412", "Via Roma 12", "Calle de Alcalá 45". */
const NUMBER_LAST_RE = new RegExp(
  String.raw`(?<=((?:\p{Lu}[\p{L}\p{M}-]{0,40}(?:${SUFFIXES})|(?:${PREFIXES})\.?\s(?:${LINK}\s?){0,2}\p{Lu}[\p{L}\p{M}'’-]{1,30}(?:\s\p{Lu}[\p{L}\p{M}'’-]{1,30}){0,2}),?\s{1,2}))\d(?<![\p{L}\d.,/:-]\d)\d{0,3}[a-z]?(?:[-/]\d{1,4}[a-z]?)?(?![\d.,:]\d)`,
  'giu',
);

const ADDRESS_CUE =
  /(?:\b(?:live|living|lives|lived|address|moved|move|moving|staying|stay|deliver|send|ship|post|located|based|at|house|home|flat|apartment|apt)\b)[^.!?\n]{0,20}$/;
const TOWN_WORD = String.raw`\p{Lu}[\p{L}\p{M}'’-]{1,30}(?![\p{L}\p{M}\d])`;
const TOWN = String.raw`${TOWN_WORD}(?:\s${TOWN_WORD}){0,2}`;
const TOWN_COMMA_RE = new RegExp(String.raw`^,\s{0,2}(${TOWN})`, 'u');
const STATE_RE = /^,?\s{1,2}([A-Z]{2})(?=,?\s{1,2}\d{5})/;
const NOT_TOWN = new Set(['I', 'The', 'We', 'My', 'And', 'But', 'So', 'It', 'He', 'She', 'They', 'You', 'Then']);

// UK (incl. GIR 0AA), US ZIP/ZIP+4 and EU five-digit, Dutch "1012 AB", Irish Eircode.
const UK_PC = String.raw`(?:GIR ?0AA|[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})`;
const EIRCODE = String.raw`(?:[AC-FHKNPRTV-Y]\d{2}|D6W) ?[0-9AC-FHKNPRTV-Y]{4}`;
const POSTCODE_ANY = String.raw`(?:${UK_PC}|${EIRCODE}|\d{5}(?:-\d{4})?|\d{4} ?[A-Z]{2}(?![A-Za-z])|\d{4}|\d{2}-\d{3})`;
const POSTCODE_AFTER_RE = new RegExp(String.raw`^(,?\s{0,2}(?:(${TOWN})\s{1,2})?)(${POSTCODE_ANY})(?![\p{L}\d])`, 'u');
const UK_PC_STICKY = new RegExp(String.raw`${UK_PC}(?![\p{L}\d])`, 'uy');
const EIRCODE_STICKY = new RegExp(String.raw`${EIRCODE}(?![\p{L}\d])`, 'uy');
const POSTCODE_CUE_RE = new RegExp(
  String.raw`\b(?:post\s?code|postal\s+code|zip(?:\s*code)?|eircode|plz|code\s+postal|cap|postnummer)(?:\s+(?:is|was))?[\s:,-]{0,3}(${POSTCODE_ANY})(?![\p{L}\d])`,
  'giu',
);

function isCapitalised(word: string): boolean {
  const c = word[0];
  return c !== undefined && (c !== c.toLowerCase() || /\d/.test(c));
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
  const pc = POSTCODE_AFTER_RE.exec(text.slice(end, end + 60));
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

export function findAddresses(text: string, out: Candidate[]): void {
  ENGLISH_RE.lastIndex = 0;
  for (let m = ENGLISH_RE.exec(text); m; m = ENGLISH_RE.exec(text)) {
    const unit = m[1] ?? '';
    const start = m.index - unit.length;
    let end = m.index + m[0].length;
    // Capitalised street names stand alone; lowercase ones ("12 baker street") need an address cue before them.
    const nameWords = m[0].split(/[\s,]+/).slice(1);
    const capitalised = nameWords.every((w) => isCapitalised(w) || /^(?:N|S|E|W|NE|NW|SE|SW|#.*|\d.*)$/i.test(w));
    if (!capitalised && !ADDRESS_CUE.test(before(text, start, 40))) continue;
    if (/\.$/.test(m[0]) && !/\b(?:st|rd|ave|av|ln|dr|ct|pl|cres|tce|gdns|blvd|sq|hwy|cir|pkwy)\.$/i.test(m[0])) end--;
    ENGLISH_RE.lastIndex = finishAddress(text, start, end, out);
  }
  FRENCH_RE.lastIndex = 0;
  for (let m = FRENCH_RE.exec(text); m; m = FRENCH_RE.exec(text)) {
    FRENCH_RE.lastIndex = finishAddress(text, m.index, m.index + m[0].length, out);
  }
  NUMBER_LAST_RE.lastIndex = 0;
  for (let m = NUMBER_LAST_RE.exec(text); m; m = NUMBER_LAST_RE.exec(text)) {
    const head = m[1]!;
    const start = m.index - head.length;
    if (start > 0 && /[\p{L}\p{M}]/u.test(text[start - 1]!)) continue;
    NUMBER_LAST_RE.lastIndex = finishAddress(text, start, m.index + m[0].length, out);
  }
}

export function findPostcodes(text: string, out: Candidate[]): void {
  // UK and Irish forms anywhere: scan capitals that start a word, then try both shapes there.
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 65 || c > 90) continue;
    if (i > 0 && /[\p{L}\p{M}\d]/u.test(text[i - 1]!)) continue;
    UK_PC_STICKY.lastIndex = i;
    const uk = UK_PC_STICKY.exec(text);
    if (uk) {
      out.push({ type: 'POSTCODE', start: i, end: i + uk[0].length, priority: PRIORITY.POSTCODE });
      continue;
    }
    EIRCODE_STICKY.lastIndex = i;
    const ie = EIRCODE_STICKY.exec(text);
    if (ie) {
      const suffix = ie[0].slice(-4);
      if (/\d/.test(suffix) && /[A-Z]/.test(suffix))
        out.push({ type: 'POSTCODE', start: i, end: i + ie[0].length, priority: PRIORITY.POSTCODE });
    }
  }
  POSTCODE_CUE_RE.lastIndex = 0;
  for (let m = POSTCODE_CUE_RE.exec(text); m; m = POSTCODE_CUE_RE.exec(text)) {
    const code = m[1]!;
    const end = m.index + m[0].length;
    out.push({ type: 'POSTCODE', start: end - code.length, end, priority: PRIORITY.POSTCODE });
  }
}
