/**
 * Person names: a gazetteer of given names and surnames plus context cues. The cues decide the hard cases:
 * names that are words (Grace, Will), names in no list (my friend Oluwaseun), and names of biblical, historical,
 * fictional or famous figures (Paul the apostle, Henry VIII, Matilda, Taylor Swift), which the labeling contract
 * says are not private individuals.
 */
import { PRIORITY, type Candidate } from './candidate';
import {
  BIBLICAL_FIGURES,
  FAMOUS_FULL_NAMES,
  FAMOUS_PEOPLE,
  FICTIONAL_NAMES,
  FIRST_NAMES,
  INSTITUTION_WORDS,
  LOWERCASE_UNSAFE,
  NOT_NAMES,
  STRONGLY_BIBLICAL,
  SURNAME_WORDS,
  SURNAMES,
  WORD_NAMES,
} from './names-data';
import { cueBefore, isStrictTitle, UNKNOWN_NAME_CUE_WORDS, W, wordsBefore, type Cue } from './person-cues';
import { foldCode, isLetterAt, isUpperAt, isWordCharAt, wordHash } from './text-utils';

const words = (s: string) => new Set(s.split(/\s+/).filter(Boolean));
const WORD_NAME_SET = words(WORD_NAMES);
const FIRST_SET = new Set([...words(FIRST_NAMES)].filter((n) => !WORD_NAME_SET.has(n)));
const SURNAME_SET = words(SURNAMES);
const SURNAME_WORD_SET = words(SURNAME_WORDS);
const BIBLICAL_SET = words(BIBLICAL_FIGURES);
const STRONGLY_BIBLICAL_SET = words(STRONGLY_BIBLICAL);
const FAMOUS_SET = words(FAMOUS_PEOPLE);
const FAMOUS_FULL_SET = new Set(FAMOUS_FULL_NAMES);
const FICTIONAL_SET = new Set(FICTIONAL_NAMES);
const INSTITUTION_SET = words(INSTITUTION_WORDS);
const NOT_NAME_SET = new Set([...words(NOT_NAMES)].filter((w) => !WORD_NAME_SET.has(w) && !FIRST_SET.has(w)));
const LOWER_UNSAFE_SET = words(LOWERCASE_UNSAFE);
/** Word-names that are adjectives first: "i'm rich" is never a name. */
const ADJECTIVE_NAMES = words(
  'rich frank sunny rusty dusty misty sandy earnest august sterling blue stormy honey young',
);
const PARTICLES = words('van von de der den da di du del della dos das le la al el bin ibn bint ben ter ten ap st');
const IS_WAS_AFTER = /^\s+(?:is|was)\b/i;
const NAME_PARTS = /[\s.]+/;
const CUE_BEFORE_HASHES = new Set(UNKNOWN_NAME_CUE_WORDS.map(wordHash));
/** Words right after an unknown capitalised word that can make it a name ("X and I", "X is my son"). */
const CUE_AFTER_HASHES = new Set(
  ['and', '&', 'is', 'are', 'was', 'were', 'in', 'from', 'here', 'but', 'by'].map(wordHash),
);

/** Cheap pre-check: is there anything around an unknown capitalised word that decide() could read as a cue? */
function mayBeUnknownName(text: string, tok: Token, lastNameEnd: number): boolean {
  if (lastNameEnd >= 0 && tok.start - lastNameEnd <= 6) return true; // a list of names
  // The word before (skipping spaces, commas, quotes).
  let i = tok.start;
  while (i > 0 && /[\s,"“:(]/.test(text[i - 1]!)) i--;
  let j = i;
  while (j > 0 && (isLetterAt(text, j - 1) || text[j - 1] === "'" || text[j - 1] === '’' || text[j - 1] === '&')) j--;
  if (j < i) {
    let h = 0;
    for (let k = j; k < i; k++) h = (Math.imul(h, 31) + foldCode(text.charCodeAt(k))) | 0;
    if (CUE_BEFORE_HASHES.has(h)) return true;
  }
  if (j > 0 && text[j - 1] === '.' && i === j) return false;
  // What follows: a comma, an emoji or punctuation (self-introductions), a capitalised word, or a cue word.
  let e = tok.end + possessiveLen(text, tok.end);
  const c = text.charCodeAt(e);
  if (e >= text.length || (c !== 32 && c !== 0xa0)) return true;
  while (e < text.length && (text.charCodeAt(e) === 32 || text.charCodeAt(e) === 0xa0)) e++;
  if (e >= text.length || !isLetterAt(text, e)) return true;
  if (isUpperAt(text, e)) return true;
  let h = 0;
  while (e < text.length && isLetterAt(text, e)) h = (Math.imul(h, 31) + foldCode(text.charCodeAt(e++))) | 0;
  return CUE_AFTER_HASHES.has(h);
}
const HERE_AFTER = /^,? here\b/i;
const SPACES = /\s+/g;
const NEXT_WORD = /^\s+([\p{L}\p{M}'’-]+)/u;
const PUNCT_AFTER = /^\s*[.!?,]/;
const VOCATIVE_COMMA = /^,\s/;
const COMMA_AFTER = /^\s*[,!]/;
const PLACE_PREPOSITIONS = new Set('from in at to near visit visited'.split(' ').map(wordHash));

/** Word-names that are abstract nouns first: a person only with a cue in front or a speech verb after. */
const ABSTRACT_NAMES = words(`joy hope grace faith mercy charity patience prudence destiny chance harmony melody trinity
  verity felicity constance honor honour liberty serenity peace love`);
// "Faith said", "Faith from group said": speech verbs go with people, not abstract nouns.
const SPEECH_AFTER =
  /^(?:\s+from\s+[\p{L}]+(?:\s+[\p{L}]+)?)?\s+(?:said|says|told|tells|texted|texts|asked|asks|replied|messaged|emailed|rang|called)\b/iu;
const IRREGULAR_PAST = words(`bought got made took came went said told gave ran won lost sent left kept felt thought
  brought found saw wrote drove rode sang swam began broke chose ate fell forgot grew knew met paid sat slept spoke
  spent stood taught understood woke wore hit hurt let put read set shut cut quit did had sold`);
const RELATIONS_AFTER_RE =
  /^(?:\s+(?:and|&)\s+\p{Lu}[\p{L}\p{M}'’-]+)?,?\s+(?:is|are|was|were|'s|’s)\s+(?:my|our|his|her|their)\s+(?:[\p{L}\d-]+\s+){0,2}?(?:son|sons|daughter|daughters|kids?|children|girls?|boys?|twins?|wife|husband|partner|friend|friends|mum|mom|dad|brother|sister|cousin|niece|nephew|grandson|granddaughter|boss|coach|teacher|neighbou?r|colleague|flatmate|roommate|carer|therapist|baby|babies|fianc[ée]e?|girlfriend|boyfriend|bestie)\b/u;
const PERSON_PHRASE_AFTER =
  /^\s+(?:in|from)\s+(?:my|our|his|her|their)\s+(?:class|team|group|year|form|school|office|club|squad|unit|ward|street|building|church|family|running club|gym|work|job|course|uni|cell group|small group|book club|choir)\b|^\s+(?:and|&)\s+(?:i|me)\b/i;

/** A given name that is not also a common word (used by the URL recognizer for personal-site hosts). */
export function isKnownFirstName(s: string): boolean {
  return FIRST_SET.has(s);
}
export function isKnownSurname(s: string): boolean {
  return SURNAME_SET.has(s);
}

interface Token {
  start: number;
  end: number; // without a possessive 's
  text: string; // without a possessive 's
  lower: string;
  cap: boolean;
}

function possessiveLen(text: string, at: number): number {
  const q = text.charCodeAt(at);
  const s = text.charCodeAt(at + 1);
  return (q === 39 || q === 0x2019) && (s === 115 || s === 83) && !isWordCharAt(text, at + 2) ? 2 : 0;
}

function makeToken(text: string, start: number, raw: string): Token {
  let t = raw;
  if (t.length > 3 && possessiveLen(t, t.length - 2) === 2) t = t.slice(0, -2);
  return { start, end: start + t.length, text: t, lower: t.toLowerCase(), cap: isUpperAt(t, 0) };
}

/** The word right after `from` and one or two spaces (letters, with inner apostrophes and hyphens), or null. */
function adjacentToken(text: string, from: number): Token | null {
  let s = from;
  while (s < text.length && s - from < 2 && (text.charCodeAt(s) === 32 || text.charCodeAt(s) === 0xa0)) s++;
  if (s === from || !isLetterAt(text, s)) return null;
  let e = s + 1;
  for (;;) {
    if (isLetterAt(text, e)) e++;
    else {
      const c = text.charCodeAt(e);
      if ((c === 39 || c === 0x2019 || c === 45) && isLetterAt(text, e + 1)) e += 2;
      else break;
    }
  }
  return makeToken(text, s, text.slice(s, e));
}

/** Sentence-initial: only spaces, quotes or brackets between the token and the start of text or a . ! ? newline. */
export function isSentenceInitial(text: string, start: number): boolean {
  for (let i = start - 1; i >= 0; i--) {
    const c = text[i]!;
    if (c === ' ' || c === '"' || c === '“' || c === "'" || c === '‘' || c === '(' || c === '*' || c === '-') continue;
    return c === '.' || c === '!' || c === '?' || c === '\n' || c === ':' || c === '…' || c === '>';
  }
  return true;
}

function allCaps(t: string): boolean {
  if (t.length < 2) return false;
  const c = t.charCodeAt(1);
  if (c >= 97 && c <= 122) return false; // the usual case, decided without allocating
  return t === t.toUpperCase() && t !== t.toLowerCase();
}

/** A capitalised token that may continue a name (surname, middle name). */
function canContinue(t: Token): boolean {
  return t.cap && !allCaps(t.text) && !NOT_NAME_SET.has(t.lower) && !INSTITUTION_SET.has(t.lower);
}

// After a name: a verb or phrase that people, not words, go with ("Bill from AA said", "Mark thinks").
const NAME_VERB_AFTER =
  /^(?:'s|’s|\s+(?:said|says|told|tells|thinks|thought|wants|wanted|asked|asks|texted|called|rang|replied|reckons|reckoned|suggested|suggests|and i|and me|keeps|kept|just|who|whose|has been|had been|always|never|came|comes|went|goes|got|gets|loves|loved|hates|hated|died|passed|left|moved|turned|turns|started|finished|ran|runs|cried|laughed|smiled|shouted|yelled|knows|knew|feels|felt|seems|seemed|looks|looked|did|does|didn't|doesn't|won't|can't|isn't|wasn't|hasn't|is my|was my|from|here|says|texts|messaged)\b)/i;
// After a lowercase word-name with no cue: only a past or third-person verb makes "will" a person.
const PAST_VERB_AFTER =
  /^\s+(?:(?:only|just|also|never|always|still|even|really|actually)\s+)?(?:got|gets|has|had|said|says|did|does|went|goes|scored|won|wins|lost|ran|came|made|took|thinks|thought|wants|wanted|told|asked|beat|finished)\b/i;
// Where a name is followed by something that ends it: punctuation, the end, a conjunction, an emoji.
const END_OF_NAME =
  /^(?:\s*$|\s*[,.!?;:)(—–-]|\s+(?:and|but|from|here|by|in|&|too|lol|x+|again|btw|haha|hehe|lmao)\b|\s*[^\p{L}\p{N}\s])/u;

// Words in front of a name that mark a royal, saintly, biblical or historical figure ("King David", "St Paul",
// "the gospel of John"). One word, or two words read in order.
const FIGURE_BEFORE_WORDS = words(`king queen prince princess emperor empress tsar czar pope saint st st. lord lady duke
  duchess pharaoh sultan kaiser apostle prophet prophetess patriarch disciple evangelist pontius virgin`);
const FIGURE_BEFORE_PAIRS = [
  'high priest',
  'brother of',
  'son of',
  'daughter of',
  'wife of',
  'book of',
  'gospel of',
  'letter to',
  'letters of',
  'story of',
  'life of',
  'god of',
  'days of',
  'time of',
  'house of',
  'tribe of',
  'line of',
  'according to',
  'epistle to',
  'reign of',
  'wives of',
];
const FIGURE_BEFORE = new Set([...FIGURE_BEFORE_WORDS].map(wordHash));
/** Two-word cues by their last word's hash, then the word before it ("son of": of → son). */
const FIGURE_BEFORE_2 = new Map<number, Set<number>>();
for (const pair of FIGURE_BEFORE_PAIRS) {
  const [w1, w0] = pair.split(' ') as [string, string];
  const h0 = wordHash(w0);
  if (!FIGURE_BEFORE_2.has(h0)) FIGURE_BEFORE_2.set(h0, new Set());
  FIGURE_BEFORE_2.get(h0)!.add(wordHash(w1));
}
const BIBLICAL_AFTER_CUE =
  /^(?:'s|’s)?,?\s+(?:the\s+(?:apostle|baptist|evangelist|prophet|elder|great|king|beloved|tishbite|levite|priest|scribe|disciple|tentmaker|psalmist|patriarch|judge|younger|less|zealot|tax collector|hittite|dealer|son of|wife of|mother of|father of)|of\s+(?:nazareth|arimathea|tarsus|bethany|galilee|israel|judah|egypt|cyrene|canaan|jerusalem|babylon|patmos|assisi|hippo|thyatira|magdala)|magdalene|iscariot|\d{1,3}\s*:\s*\d)\b/i;
const REGNAL_AFTER = /^ (?:I{1,3}|IV|VI{0,3}|IX|XI{0,3}|XIV|XVI?)(?![\p{L}'’])/u;
/** Every leading part of a famous full name ("taylor" of "taylor swift"), to know when to read the next word. */
const FAMOUS_PREFIXES = new Set(
  FAMOUS_FULL_NAMES.flatMap((n) =>
    n
      .split(' ')
      .slice(0, -1)
      .map((_, i, ws) => ws.slice(0, i + 1).join(' ')),
  ),
);
/** Words that make a text about books, films or stories (fictional names and author credits are not PII there). */
export const FICTION_CONTEXT_WORDS = `character characters novel novels book books story stories author film movie
  chapter poem play fairytale tale read reading dahl rowling shakespeare tolkien dickens protagonist heroine villain
  fictional fiction cartoon disney pixar series episode hogwarts wizard witch`
  .split(/\s+/)
  .filter(Boolean);
/** Hashes of biblical names, for the scanner's count of distinct biblical names in a text. */
export const BIBLICAL_HASHES: ReadonlySet<number> = new Set([...BIBLICAL_SET].map(wordHash));

export interface PersonOptions {
  /** Lowercased name tokens already accepted in this scope (earlier turns); mentions of them are names again. */
  knownNames?: ReadonlySet<string>;
}

/** Hashes of lowercase given names (and word-names): the scanner sends a lowercase word here only on a hit. */
export const LOWER_NAME_HASHES: ReadonlySet<number> = new Set([...FIRST_SET, ...WORD_NAME_SET].map(wordHash));
/** Hashes of every listed name (given, word-name, surname): a capitalised word at a sentence start needs one. */
export const ANY_NAME_HASHES: ReadonlySet<number> = new Set(
  [...FIRST_SET, ...WORD_NAME_SET, ...SURNAME_SET].map(wordHash),
);
/** Hashes of capitalised words that are never names on their own (I, The, Monday, God). */
export const NOT_NAME_HASHES: ReadonlySet<number> = new Set([...NOT_NAME_SET].map(wordHash));

// "R. de Vries", "J. K. Smith": initials, optional particles, a capitalised surname.
const INITIALS_RE =
  /\p{Lu}\.\s?(?:\p{Lu}\.\s?)?((?:(?:de|van|von|der|den|du|da|di|le|la|ter|ten|del|dos)\s){0,2})(\p{Lu}[\p{Ll}\p{M}'’-]+)/uy;

/** What the scanner learned about the whole text, which some person decisions depend on. */
export interface TextContext {
  /** Scripture words or a "Book 3:16" reference anywhere in the text. */
  scripture: boolean;
  /** Words about books, films and stories anywhere in the text. */
  fiction: boolean;
  /** Distinct biblical names written capitalised (Ruth … Naomi, Abraham … Isaac). */
  biblicalNames: number;
  /** The text has double quotes (titles of books and films are quoted). */
  quotes: boolean;
}

/** Person decisions for one text, made after the scan, in text order, with the names accepted so far. */
export class PersonScan {
  private readonly local = new Set<string>();
  lastNameEnd = -10;

  constructor(
    readonly text: string,
    readonly out: Candidate[],
    private readonly prior: ReadonlySet<string> | undefined,
    private readonly context: TextContext,
  ) {}

  isKnown(lower: string): boolean {
    return this.local.has(lower) || (this.prior?.has(lower) ?? false);
  }

  /** Names accepted in this text that no list holds ("Oluwadamilare"): their other mentions are looked up too. */
  unlisted(): string[] {
    if (this.local.size === 0) return [];
    return [...this.local].filter(
      (w) => w.length > 1 && !FIRST_SET.has(w) && !WORD_NAME_SET.has(w) && !SURNAME_SET.has(w) && !/[.]/.test(w),
    );
  }

  /** Looks at the word `raw` starting at `start`; on a name, records it and returns where it ends, else -1. */
  tokenAt(start: number, raw: string): number {
    const tok = makeToken(this.text, start, raw);
    const span = tok.text.length === 1 ? initials(this, tok) : decide(this, tok);
    if (!span) return -1;
    this.out.push({ type: 'PERSON', start: span.start, end: span.end, priority: PRIORITY.PERSON });
    for (const part of this.text.slice(span.start, span.end).toLowerCase().split(NAME_PARTS))
      if (part) this.local.add(part);
    this.lastNameEnd = span.end;
    return span.end;
  }

  inScripture(): boolean {
    return this.context.scripture;
  }
  inFiction(): boolean {
    return this.context.fiction;
  }
  hasQuotes(): boolean {
    return this.context.quotes;
  }
  biblicalNames(): number {
    return this.context.biblicalNames;
  }
  /** The sentence that starts at `from` speaks to "you". */
  secondPersonAfter(from: number): boolean {
    const rest = this.text.slice(from, from + 160);
    const stop = rest.search(/[.!?\n]/);
    return /\b(?:you|your|you're|you’re)\b/i.test(stop === -1 ? rest : rest.slice(0, stop + 1));
  }
}

function initials(scan: PersonScan, tok: Token): { start: number; end: number } | null {
  const { text } = scan;
  if (!tok.cap || text[tok.end] !== '.') return null;
  if (tok.start > 0 && text[tok.start - 1] === '.') return null;
  INITIALS_RE.lastIndex = tok.start;
  const m = INITIALS_RE.exec(text);
  if (!m) return null;
  const surname = m[2]!.toLowerCase();
  if (NOT_NAME_SET.has(surname) || INSTITUTION_SET.has(surname)) return null;
  const cue = cueBefore(text, tok.start, scan.lastNameEnd, wordsBefore(text, tok.start));
  const ok = m[1]!.length > 0 || SURNAME_SET.has(surname) || FIRST_SET.has(surname) || cue !== 'none';
  if (!ok) return null;
  const end = tok.start + m[0].length;
  const before = wordsBefore(text, tok.start);
  return excluded(scan, tok, end, 2, cue, before, text.slice(end, end + 40)) ? null : { start: tok.start, end };
}

function decide(scan: PersonScan, tok: Token): { start: number; end: number } | null {
  const { text } = scan;
  const { lower, cap } = tok;
  if (allCaps(tok.text) && !FIRST_SET.has(lower)) return null;
  const isKnown = scan.isKnown(lower);
  if (NOT_NAME_SET.has(lower) && !isKnown) return null;
  const isFirst = FIRST_SET.has(lower);
  const isWordName = WORD_NAME_SET.has(lower);
  const isSurname = SURNAME_SET.has(lower);
  const initial = cap && isSentenceInitial(text, tok.start);
  // A capitalised word in no list at the start of a sentence has no cue in front of it: not a name. This is
  // most capitalised tokens, so it is settled before any cue is read.
  if (cap && initial && !isFirst && !isWordName && !isSurname && !isKnown) return null;
  // A capitalised word in no list mid-sentence ("Paris", "Chromebook") is a name only after a cue word, before
  // a relation or a surname, or in a list of names. Most are places and things: settle them without reading cues.
  if (cap && !isFirst && !isWordName && !isSurname && !isKnown && !mayBeUnknownName(text, tok, scan.lastNameEnd))
    return null;

  const before = wordsBefore(text, tok.start);
  const cue: Cue = cueBefore(text, tok.start, scan.lastNameEnd, before);
  const strong = cue === 'intro' || cue === 'relation' || cue === 'title';
  const afterAt = tok.end + possessiveLen(text, tok.end);
  const after = text.slice(tok.end, tok.end + 40);
  const next = adjacentToken(text, afterAt);
  const nextName = next && canContinue(next) && afterAt === tok.end ? next : null;
  if (next && next.cap && INSTITUTION_SET.has(next.lower)) return null; // Khan Academy, Patel Pharmacy

  // A capitalised word-name ("Grace", "Will") is a person after any cue but a weak one at a sentence start, or before
  // a phrase that goes with people.
  const cuedWordName = () =>
    strong ||
    cue === 'iam' ||
    cue === 'chain' ||
    (cue === 'greeting' && END_OF_NAME.test(after)) ||
    (cue === 'weak' && !initial) ||
    personAfter(after);
  let ok: boolean;
  if (cap) {
    if (isFirst || isKnown) ok = true;
    else if (isWordName && ABSTRACT_NAMES.has(lower))
      ok = cuedWordName() || (nextName !== null && SURNAME_SET.has(nextName.lower)) || SPEECH_AFTER.test(after);
    else if (isWordName)
      ok =
        cuedWordName() ||
        (nextName !== null && (SURNAME_SET.has(nextName.lower) || !initial)) ||
        (NAME_VERB_AFTER.test(after) && !IS_WAS_AFTER.test(after));
    else if (isSurname)
      ok =
        strong ||
        cue === 'chain' ||
        (!initial && !SURNAME_WORD_SET.has(lower)) ||
        (nextName !== null && (!initial || FIRST_SET.has(nextName.lower) || SURNAME_SET.has(nextName.lower)));
    else
      ok =
        strong ||
        (cue === 'iam' && END_OF_NAME.test(after)) ||
        (cue === 'chain' && !initial) ||
        (!initial && personAfter(after)) ||
        (cue === 'greeting' && COMMA_AFTER.test(after)) ||
        // An unknown word before a known surname: "Chidubem Okafor" (not "from São Paulo", not a German compound).
        (nextName !== null &&
          !initial &&
          tok.text.length <= 12 &&
          SURNAME_SET.has(nextName.lower) &&
          !SURNAME_WORD_SET.has(nextName.lower) &&
          !PLACE_PREPOSITIONS.has(before[0] ?? 0));
  } else if (isFirst) ok = !LOWER_UNSAFE_SET.has(lower) || strong || cue === 'iam' || cue === 'greeting';
  else if (isWordName)
    ok =
      (strong && !looksLikeVerbPhrase(after)) ||
      (cue === 'iam' && !ADJECTIVE_NAMES.has(lower) && END_OF_NAME.test(after)) ||
      (before.length === 0 && PAST_VERB_AFTER.test(after) && !ADJECTIVE_NAMES.has(lower));
  else if (isKnown) ok = !LOWER_UNSAFE_SET.has(lower);
  else ok = (cue === 'intro' || (cue === 'title' && isStrictTitle(before[0] ?? 0))) && lower.length > 1;
  if (!ok) return null;

  // Extend over surnames and middle names: capitalised tokens, particles before a capitalised token, or lowercase
  // surnames in a lowercase name ("sarah jones").
  let end = tok.end;
  let count = 1;
  let cur = afterAt === tok.end ? next : null; // "Noah's Chromebook" is not a surname
  while (cur && count < 4) {
    if (cap && PARTICLES.has(cur.lower) && !cur.cap) {
      const after2 = adjacentToken(text, cur.end);
      if (after2 && canContinue(after2)) {
        end = after2.end;
        count += 2;
        cur = adjacentToken(text, after2.end + possessiveLen(text, after2.end));
        continue;
      }
      break;
    }
    const continues = cap
      ? canContinue(cur)
      : !cur.cap && SURNAME_SET.has(cur.lower) && !SURNAME_WORD_SET.has(cur.lower) && !WORD_NAME_SET.has(cur.lower);
    if (!continues) break;
    if (cur.cap && INSTITUTION_SET.has(cur.lower)) return null;
    end = cur.end;
    count++;
    if (possessiveLen(text, cur.end) > 0) break;
    cur = adjacentToken(text, cur.end);
  }

  return excluded(scan, tok, end, count, cue, before, after) ? null : { start: tok.start, end };
}

/** Biblical, historical, royal, fictional and famous figures: not private individuals. */
function excluded(
  scan: PersonScan,
  tok: Token,
  end: number,
  count: number,
  cue: Cue,
  before: number[],
  after: string,
): boolean {
  const { text } = scan;
  const lower = tok.lower;
  const privateCue = cue === 'relation' || cue === 'intro' || cue === 'iam' || HERE_AFTER.test(after);
  const full = count === 1 ? lower : text.slice(tok.start, end).toLowerCase().replace(SPACES, ' ');
  // Famous full names, also when the surname did not extend the span ("is harry potter real").
  if (FAMOUS_FULL_SET.has(full)) return !privateCue;
  if (FAMOUS_PREFIXES.has(full)) {
    const next = NEXT_WORD.exec(text.slice(end, end + 30))?.[1]?.toLowerCase();
    if (next && FAMOUS_FULL_SET.has(`${full} ${next}`)) return !privateCue;
  }
  if (FAMOUS_SET.has(count > 1 ? full.slice(full.lastIndexOf(' ') + 1) : lower)) return !privateCue;
  if (privateCue) return false;

  const b0 = before[0] ?? 0;
  if (count === 1 && text.charCodeAt(end) === 32 && REGNAL_AFTER.test(text.slice(end, end + 8))) return true; // Henry VIII
  if (cue !== 'title' && (FIGURE_BEFORE.has(b0) || FIGURE_BEFORE_2.get(b0)?.has(before[1] ?? 0))) return true;
  if ((FICTIONAL_SET.has(full) || FICTIONAL_SET.has(lower)) && scan.inFiction()) return true;
  if (b0 === W.by && scan.inFiction()) return true; // an author credit: "by Eric Carle"
  if (scan.hasQuotes() && inTitleQuote(text, tok.start, end)) return true; // "Charlotte's Web"
  if (count === 1 && BIBLICAL_SET.has(lower)) {
    if (BIBLICAL_AFTER_CUE.test(after)) return true;
    if (STRONGLY_BIBLICAL_SET.has(lower)) return true;
    if (b0 === W.like || (b0 === W.did && before[1] === W.as)) return true; // "brave like Esther"
    // In a text about the Bible, a biblical name is the figure unless a title marks a living person (Pastor John).
    if ((scan.inScripture() || scan.biblicalNames() >= 2) && cue !== 'title') return true;
    // "Ruth, how did you…", "Dear Daniel, …", "talk to you, Esther": a biblical figure spoken to in a role-play.
    if (b0 === W.you && PUNCT_AFTER.test(after)) return true;
    if (
      (cue === 'none' || cue === 'greeting') &&
      VOCATIVE_COMMA.test(after) &&
      (cue === 'greeting' || isSentenceInitial(text, tok.start)) &&
      scan.secondPersonAfter(end)
    )
      return true;
  }
  return false;
}

function personAfter(after: string): boolean {
  return RELATIONS_AFTER_RE.test(after) || PERSON_PHRASE_AFTER.test(after);
}

/** Inside a short quoted title in Title Case ("Charlotte's Web", “Anne of Green Gables”). */
function inTitleQuote(text: string, start: number, end: number): boolean {
  const open = Math.max(text.lastIndexOf('"', start - 1), text.lastIndexOf('“', start - 1));
  if (open === -1 || start - open > 40) return false;
  const closeAt = text.slice(end, end + 40).search(/["”]/);
  if (closeAt === -1) return false;
  const inner = text.slice(open + 1, end + closeAt);
  if (/["“”\n]/.test(inner)) return false;
  const ws = inner.split(/\s+/).filter(Boolean);
  if (ws.length < 2 || ws.length > 8) return false;
  const caps = ws.filter((w) => /^\p{Lu}/u.test(w)).length;
  return caps >= ws.length - 1 && caps >= 2;
}

/**
 * After "my son will…" a word-name is a name only when what follows reads like it: punctuation, the end, or a
 * verb in the third person or past ("my son will be 5" is a modal verb).
 */
function looksLikeVerbPhrase(after: string): boolean {
  if (/^\s*(?:[,.!?;:)]|$)/.test(after)) return false;
  if (/^\s+(?:is|was|has|had|and|who|'s|’s|said|says|loves|likes|turned|turns)\b/i.test(after)) return false;
  const w = /^\s+([a-z']+)/i.exec(after);
  return !w || !(/(?:s|ed)$/.test(w[1]!) || IRREGULAR_PAST.has(w[1]!.toLowerCase()));
}
