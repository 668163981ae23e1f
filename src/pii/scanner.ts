/**
 * One pass over the text. The scanner walks it code unit by code unit, hashing each word as it goes, and calls a
 * recognizer only where its kind can start: an '@' (email, handle), a dot between word characters (URL), a colon
 * next to hex digits (IPv6), the first digit of a number (cards, checksums, phones, IPv4, addresses, scripture
 * references), a capitalised word (names, postcodes, IBANs), a lowercase word whose hash is a given name, and a
 * few keywords ("born", "postcode", "name is", "mr"). Plain prose costs a hash step per character and a Set lookup
 * per word; no regex runs over it.
 */
import { ADDRESS_CUE_WORDS, addressesAt, postcodeAfterCueAt, postcodeAt, STREET_PREFIX_WORDS } from './address';
import type { Candidate } from './candidate';
import { dateOfBirthAt, emailOrHandleAt, ibanAt, ipv6At, isAlnum, isDigit, numbersAt, urlAt } from './patterns';
import {
  ANY_NAME_HASHES,
  BIBLICAL_HASHES,
  FICTION_CONTEXT_WORDS,
  isSentenceInitial,
  LOWER_NAME_HASHES,
  NOT_NAME_HASHES,
  PersonScan,
} from './person';
import { BIBLE_BOOKS } from './names-data';
import { SCRIPTURE_CONTEXT_WORDS, scriptureRefAt } from './scripture';
import { foldCode, HashFlags, isLetterAt, wordHash } from './text-utils';

// Keyword kinds (plain numbers: a const enum would not survive isolated-module compilation everywhere).
const Kw = { None: 0, Dob: 1, Birth: 2, Postcode: 3, Name: 4, NameIs: 5, Is: 6, Title: 7 } as const;
type Kw = (typeof Kw)[keyof typeof Kw];

const KEYWORDS = new Map<number, { word: string; kind: Kw }>();
// One lookup per word: bit flags for the name lists (keywords are confirmed in KEYWORDS only on a flag hit).
const F_LOWER_NAME = 1;
const F_ANY_NAME = 2;
const F_NOT_NAME = 4;
const F_KEYWORD = 8;
const F_BOOK = 16;
const F_ADDRESS_CUE = 32;
const F_SCRIPTURE = 64;
const F_FICTION = 128;
const F_BIBLICAL = 256;
const F_STREET_PREFIX = 512;
const WORD_INFO = new HashFlags();
const flag = (h: number, f: number) => WORD_INFO.add(h, f);
for (const h of LOWER_NAME_HASHES) flag(h, F_LOWER_NAME);
for (const h of ANY_NAME_HASHES) flag(h, F_ANY_NAME);
for (const h of NOT_NAME_HASHES) flag(h, F_NOT_NAME);
for (const w of BIBLE_BOOKS.split(/\s+/)) if (w) flag(wordHash(w), F_BOOK);
for (const w of ADDRESS_CUE_WORDS) flag(wordHash(w), F_ADDRESS_CUE);
for (const w of SCRIPTURE_CONTEXT_WORDS) flag(wordHash(w), F_SCRIPTURE);
for (const w of FICTION_CONTEXT_WORDS) flag(wordHash(w), F_FICTION);
for (const h of BIBLICAL_HASHES) flag(h, F_BIBLICAL);
for (const w of STREET_PREFIX_WORDS) flag(wordHash(w), F_STREET_PREFIX);
for (const [words, kind] of [
  ['born birthday birthdate dob', Kw.Dob],
  ['birth', Kw.Birth],
  ['postcode post postal zip zipcode eircode plz postnummer', Kw.Postcode],
  ['name', Kw.Name],
  ["name's", Kw.NameIs],
  ['is was', Kw.Is],
  ['mr mrs ms mx', Kw.Title],
] as const) {
  for (const word of words.split(' ')) KEYWORDS.set(wordHash(word), { word, kind });
}
for (const h of KEYWORDS.keys()) flag(h, F_KEYWORD);

const D_HASH = wordHash('d');
const isHex = (c: number) => isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
const isAsciiLetter = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
const isLocalChar = (c: number) => isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45;

/** How many digits the number-like run at `i` holds: digits with single separators (space - . / ( )) between. */
function runDigits(text: string, i: number): number {
  let d = 0;
  let j = i;
  const n = Math.min(text.length, i + 40);
  while (j < n) {
    const c = text.charCodeAt(j);
    if (isDigit(c)) {
      d++;
      j++;
      continue;
    }
    const next = j + 1 < text.length ? text.charCodeAt(j + 1) : 0;
    const sep = c === 32 || c === 45 || c === 46 || c === 47 || c === 40 || c === 41;
    if (sep && (isDigit(next) || ((next === 32 || next === 40 || next === 41) && isDigit(text.charCodeAt(j + 2))))) {
      j++;
      continue;
    }
    break;
  }
  return d;
}

/** The scan of one text: candidates so far, the lazily made person state, the last two keywords seen. */
class Scanner {
  readonly out: Candidate[] = [];
  // Words that may be names, decided after the scan (when the whole text's context is known): start, end pairs.
  private readonly personWords: number[] = [];
  private scripture = false;
  private fiction = false;
  private quotes = false;
  private biblical: Set<number> | undefined;
  private prev1: Kw = Kw.None;
  private prev2: Kw = Kw.None;
  private lastWordEnd = -10;
  private lastWordFlags = 0;
  private lastWordUpper = false;
  private lastAddressCue = -100;
  private lastStreetPrefix = -100;
  // Lowercase names from earlier turns that no list holds ("oluwadamilare") are looked up by hash too.
  private readonly knownHashes: Set<number> | undefined;

  constructor(
    readonly text: string,
    private readonly knownNames: ReadonlySet<string> | undefined,
  ) {
    this.knownHashes = knownNames && knownNames.size > 0 ? new Set([...knownNames].map(wordHash)) : undefined;
  }

  run(): Candidate[] {
    const { text, out } = this;
    const n = text.length;
    let i = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 32) {
        i++;
        continue;
      }
      if (isAsciiLetter(c) || (c >= 0xc0 && isLetterAt(text, i))) {
        i = this.word(i);
        continue;
      }
      if (isDigit(c)) {
        i = this.number(i);
        continue;
      }
      const next = i + 1 < n ? text.charCodeAt(i + 1) : 0;
      if (c === 64) {
        const e = emailOrHandleAt(text, i, out);
        i = e > i ? e : i + 1;
        continue;
      }
      if (c === 58 && i > 0 && (next === 58 || isHex(next))) {
        const prev = text.charCodeAt(i - 1);
        if (prev === 58 || isHex(prev) || next === 58) {
          const e = ipv6At(text, i, out);
          i = e > i ? e : i + 1;
          continue;
        }
      }
      if ((c === 43 || c === 40) && isDigit(next)) {
        const e = numbersAt(text, i, runDigits(text, i + 1), out);
        i = e > i ? e : i + 1;
        continue;
      }
      if (c === 34 || c === 0x201c || c === 0x201d) this.quotes = true;
      i++;
    }
    if (this.personWords.length > 0) this.decidePersons();
    return out;
  }

  /** Person decisions in text order, then other mentions of accepted names that no list holds. */
  private decidePersons(): void {
    const { text, out, personWords } = this;
    const persons = new PersonScan(text, out, this.knownNames, {
      scripture: this.scripture,
      fiction: this.fiction,
      biblicalNames: this.biblical?.size ?? 0,
      quotes: this.quotes,
    });
    let covered = -1;
    for (let k = 0; k < personWords.length; k += 2) {
      const start = personWords[k]!;
      if (start < covered) continue;
      const e = persons.tokenAt(start, text.slice(start, personWords[k + 1]));
      if (e > 0) covered = e;
    }
    const unlisted = persons.unlisted();
    if (unlisted.length === 0) return;
    const taken = out.filter((c) => c.type === 'PERSON');
    const lower = text.toLowerCase();
    for (const w of unlisted) {
      for (let at = lower.indexOf(w); at !== -1; at = lower.indexOf(w, at + 1)) {
        const end = at + w.length;
        if (isLetterAt(text, at - 1) || isLetterAt(text, end)) continue;
        if (taken.some((c) => c.start <= at && at < c.end)) continue;
        persons.tokenAt(at, text.slice(at, end));
      }
    }
  }

  private number(i: number): number {
    const { text, out } = this;
    const n = text.length;
    const prev = i > 0 ? text.charCodeAt(i - 1) : 32;
    let g = i;
    while (g < n && isDigit(text.charCodeAt(g))) g++;
    // A digit glued to a number or word already seen belongs to that one (3x12, v2.3.1, 555-0187).
    if (isAlnum(prev) || prev === 46 || prev === 44 || prev === 45 || prev === 47 || prev === 58) return g;
    let end = numbersAt(text, i, runDigits(text, i), out);
    if (g - i <= 5) {
      const next = g < n ? text.charCodeAt(g) : 0;
      const spaceBefore = prev === 32 || prev === 0xa0;
      if (
        next === 32 ||
        next === 44 ||
        next === 45 ||
        next === 47 ||
        isAsciiLetter(next) ||
        next === 0xa0 ||
        spaceBefore
      )
        end = Math.max(
          end,
          addressesAt(
            text,
            i,
            out,
            i - this.lastAddressCue <= 40,
            this.lastWordEnd >= i - 3 && this.lastWordUpper,
            i - this.lastStreetPrefix <= 45,
          ),
        );
      // Chapter numbers follow a book name ("Romans 8:28", "1 Samuel 17").
      if (g - i <= 3 && spaceBefore && this.lastWordEnd >= i - 3 && (this.lastWordFlags & F_BOOK) !== 0) {
        const e = scriptureRefAt(text, i, out);
        if (e > i) this.scripture = true;
        end = Math.max(end, e);
      }
    }
    return Math.max(end, g);
  }

  private word(w0: number): number {
    const { text, out } = this;
    const n = text.length;
    let j = w0;
    let h = 0;
    let base = 0;
    let possessive = false;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (isAsciiLetter(c)) {
        h = (Math.imul(h, 31) + (c <= 90 ? c + 32 : c)) | 0;
        j++;
      } else if (c >= 0xc0 && isLetterAt(text, j)) {
        h = (Math.imul(h, 31) + foldCode(c)) | 0;
        j++;
      } else if ((c === 39 || c === 0x2019 || c === 45) && isLetterAt(text, j + 1)) {
        const s = text.charCodeAt(j + 1);
        if (c !== 45 && (s === 115 || s === 83) && !isLetterAt(text, j + 2)) {
          possessive = true;
          base = h;
          h = (Math.imul(Math.imul(h, 31) + 39, 31) + 115) | 0;
          j += 2;
          break;
        }
        h = (Math.imul(h, 31) + foldCode(c)) | 0;
        j++;
      } else break;
    }
    const key = possessive ? base : h;
    const next = j < n ? text.charCodeAt(j) : 0;

    // Part of an email's local part or of a host name: let those recognizers take the whole thing.
    if (
      next === 64 ||
      ((next === 46 || next === 95 || next === 43 || next === 45) && isLocalChar(text.charCodeAt(j + 1)))
    ) {
      let k = j;
      while (k < n && k - w0 < 64 && isLocalChar(text.charCodeAt(k))) k++;
      if (k < n && text.charCodeAt(k) === 64) {
        const e = emailOrHandleAt(text, k, out);
        if (e > k) return e;
      }
    }
    if (next === 46 && isAlnum(text.charCodeAt(j + 1))) {
      const e = urlAt(text, j, out);
      if (e > j) return e;
    }
    const c0 = text.charCodeAt(w0);
    const upper = c0 >= 65 && c0 <= 90;
    if (upper && isDigit(next) && j - w0 <= 2) {
      // NW1 6XE, D02 X285, GB82 WEST …
      const e = Math.max(j - w0 === 2 ? ibanAt(text, w0, out) : w0, postcodeAt(text, w0, out));
      if (e > w0) return e;
    }

    let end = j;
    let kind: Kw = Kw.None;
    const info = WORD_INFO.get(key);
    this.lastWordEnd = possessive ? j - 2 : j;
    this.lastWordFlags = info;
    this.lastWordUpper = upper || (c0 >= 0xc0 && text[w0] !== text[w0]!.toLowerCase());
    if (info >= F_ADDRESS_CUE) {
      if ((info & F_ADDRESS_CUE) !== 0) this.lastAddressCue = j;
      if ((info & F_STREET_PREFIX) !== 0 && upper) this.lastStreetPrefix = j;
      if ((info & F_SCRIPTURE) !== 0) this.scripture = true;
      if ((info & F_FICTION) !== 0) this.fiction = true;
      if ((info & F_BIBLICAL) !== 0 && upper) (this.biblical ??= new Set()).add(key);
    }
    const kw = (info & F_KEYWORD) !== 0 ? KEYWORDS.get(key) : undefined;
    if (kw && text.slice(w0, possessive ? j - 2 : j).toLowerCase() === kw.word) kind = kw.kind;
    if (kind === Kw.Name && possessive) kind = Kw.NameIs; // "name's"
    if (key === D_HASH && /^\.o\.?b\b/i.test(text.slice(j, j + 5))) end = Math.max(end, dateOfBirthAt(text, w0, out));
    if (kind === Kw.Dob) end = Math.max(end, dateOfBirthAt(text, w0, out));
    else if (kind === Kw.Birth) {
      const dateOf = /date\s+of\s+$/i.exec(text.slice(Math.max(0, w0 - 12), w0));
      end = Math.max(end, dateOfBirthAt(text, dateOf ? w0 - dateOf[0].length : w0, out));
    } else if (kind === Kw.Postcode) end = Math.max(end, postcodeAfterCueAt(text, w0, out));
    else if (kind === Kw.None || kind === Kw.Name) {
      const capital = upper || (c0 >= 0xc0 && text[w0] !== text[w0]!.toLowerCase());
      const afterIntro =
        (this.prev1 === Kw.Is && this.prev2 === Kw.Name) || this.prev1 === Kw.NameIs || this.prev1 === Kw.Title;
      const known = this.knownHashes?.has(key) ?? false;
      // Most capitalised words are settled here without a substring: a lone capital that is not an initial,
      // a word that is never a name, a word in no list at the start of a sentence.
      const worth = capital
        ? known ||
          (j - w0 === 1
            ? next === 46
            : (info & F_NOT_NAME) === 0 && ((info & F_ANY_NAME) !== 0 || !isSentenceInitial(text, w0)))
        : (info & F_LOWER_NAME) !== 0 || known || afterIntro;
      if (worth) this.personWords.push(w0, j);
    }
    this.prev2 = this.prev1;
    this.prev1 = kind;
    return end;
  }
}

export function scanCandidates(text: string, knownNames?: ReadonlySet<string>): Candidate[] {
  return new Scanner(text, knownNames).run();
}
