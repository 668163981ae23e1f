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
import { cueBefore, STRICT_TITLES, wordsBefore, type Cue } from './person-cues';
import { isScriptureContext } from './scripture';
import { isUpperAt, isWordCharAt } from './text-utils';

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
const ADJECTIVE_NAMES = words('rich frank sunny rusty dusty misty sandy earnest august sterling blue stormy honey young');
const PARTICLES = words('van von de der den da di du del della dos das le la al el bin ibn bint ben ter ten ap st');
/** Word-names that are abstract nouns first: a person only with a cue in front or a speech verb after. */
const ABSTRACT_NAMES = words(`joy hope grace faith mercy charity patience prudence destiny chance harmony melody trinity
  verity felicity constance honor honour liberty serenity peace love`);
const SPEECH_AFTER = /^\s+(?:said|says|told|tells|texted|texts|asked|asks|replied|messaged|emailed)\b/i;
const RELATIONS_AFTER_RE =
  /^(?:\s+(?:and|&)\s+\p{Lu}[\p{L}\p{M}'’-]+)?,?\s+(?:is|are|was|were|'s|’s)\s+(?:my|our|his|her|their)\s+(?:[\p{L}\d-]+\s+){0,2}?(?:son|sons|daughter|daughters|kids?|children|girls?|boys?|twins?|wife|husband|partner|friend|friends|mum|mom|dad|brother|sister|cousin|niece|nephew|grandson|granddaughter|boss|coach|teacher|neighbou?r|colleague|flatmate|roommate|carer|therapist|baby|babies|fianc[ée]e?|girlfriend|boyfriend|bestie)\b/u;
const PERSON_PHRASE_AFTER =
  /^\s+(?:in|from)\s+(?:my|our|his|her|their)\s+(?:class|team|group|year|form|school|office|club|squad|unit|ward|street|building|church|family|running club|gym|work|job|course|uni|cell group|small group|book club|choir)\b|^\s+(?:and|&)\s+(?:i|me)\b/i;
const DETERMINERS = words(`the a an my your his her our their this that these those its to of i you we they it he she
  no any some every each what which`);

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

const NEXT_TOKEN_RE = /[ \u00a0]{1,2}([\p{L}\p{M}]+(?:['’\-][\p{L}\p{M}]+)*)/uy;

/** The token right after `from`, separated by one or two spaces only. */
function adjacentToken(text: string, from: number): Token | null {
  NEXT_TOKEN_RE.lastIndex = from;
  const m = NEXT_TOKEN_RE.exec(text);
  if (!m) return null;
  return makeToken(text, from + m[0].length - m[1]!.length, m[1]!);
}

/** Sentence-initial: only spaces, quotes or brackets between the token and the start of text or a . ! ? newline. */
function isSentenceInitial(text: string, start: number): boolean {
  for (let i = start - 1; i >= 0; i--) {
    const c = text[i]!;
    if (c === ' ' || c === '"' || c === '“' || c === "'" || c === '‘' || c === '(' || c === '*' || c === '-') continue;
    return c === '.' || c === '!' || c === '?' || c === '\n' || c === ':' || c === '…' || c === '>';
  }
  return true;
}

function allCaps(t: string): boolean {
  return t.length > 1 && t === t.toUpperCase() && t !== t.toLowerCase();
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

// Words that mark a biblical, historical or royal figure in front of or after a name.
const FIGURE_BEFORE_CUE =
  /\b(?:king|queen|prince|princess|emperor|empress|tsar|czar|pope|saint|st\.?|lord|lady|duke|duchess|pharaoh|sultan|kaiser|apostle|prophet|prophetess|patriarch|disciple|evangelist|high priest|pontius|virgin|brother of|son of|daughter of|wife of|book of|gospel of|gospel according to|letter to|letters of|story of|life of|god of|days of|time of|house of|tribe of|line of|like|as did)\s+$/;
const BIBLICAL_AFTER_CUE =
  /^(?:'s|’s)?,?\s+(?:the\s+(?:apostle|baptist|evangelist|prophet|elder|great|king|beloved|tishbite|levite|priest|scribe|disciple|tentmaker|psalmist|patriarch|judge|younger|less|zealot|tax collector|hittite|dealer|son of|wife of|mother of|father of)|of\s+(?:nazareth|arimathea|tarsus|bethany|galilee|israel|judah|egypt|cyrene|canaan|jerusalem|babylon|patmos|assisi|hippo|thyatira|magdala)|magdalene|iscariot|\d{1,3}\s*:\s*\d)\b/i;
const REGNAL_AFTER = /^\s+(?:I{1,3}|IV|VI{0,3}|IX|XI{0,3}|XIV|XVI?)(?![\p{L}'’])/u;
const FICTION_CONTEXT =
  /\b(?:character|characters|novel|novels|book|books|story|stories|author|film|movie|chapter|poem|play|fairy ?tale|read|reading|dahl|rowling|shakespeare|tolkien|dickens|protagonist|heroine|villain|fictional|fiction|cartoon|disney|pixar|series|episode|hogwarts|wizard|witch)\b/i;

export interface PersonOptions {
  /** Lowercased name tokens already accepted in this scope (earlier turns); mentions of them are names again. */
  knownNames?: ReadonlySet<string>;
}

// Tokens worth a closer look: capitalised words (single letters too, for initials), the word after "my name is"
// or after "mr"/"mrs"/"ms", and lowercase given names (as a trie, so other positions fail on the first character).
const CAP_TOKEN = String.raw`\p{Lu}[\p{L}\p{M}]*(?:['’\-][\p{L}\p{M}]+)*`;
const LOWER_WORD = String.raw`\p{Ll}[\p{L}\p{M}]*(?:['’\-][\p{L}\p{M}]+)*`;
const INTRO_TOKEN = String.raw`name(?:'s|’s| is| was)[ \t]{1,3}(${LOWER_WORD})`;
const TITLE_TOKEN = String.raw`\b(?:mrs?|ms|mx)\.?[ \t]{1,2}(${LOWER_WORD})`;

function trieSource(list: Iterable<string>): string {
  interface Node {
    end?: boolean;
    next: Map<string, Node>;
  }
  const root: Node = { next: new Map() };
  for (const w of list) {
    let n = root;
    for (const ch of w) {
      let c = n.next.get(ch);
      if (!c) n.next.set(ch, (c = { next: new Map() }));
      n = c;
    }
    n.end = true;
  }
  const emit = (n: Node): string => {
    const alts = [...n.next].map(([ch, c]) => ch.replace(/[.*+?^${}()|[\]\\\-/]/g, '\\$&') + emit(c));
    if (alts.length === 0) return '';
    const body = alts.length === 1 ? alts[0]! : `(?:${alts.join('|')})`;
    return n.end ? `(?:${body})?` : body;
  };
  return emit(root);
}

const LOWER_TOKEN = String.raw`(?:${trieSource([...FIRST_SET, ...WORD_NAME_SET])})(?:['’]s)?(?![\p{L}\p{M}])`;
const INTEREST_RE = new RegExp(`${CAP_TOKEN}|${INTRO_TOKEN}|${TITLE_TOKEN}|${LOWER_TOKEN}`, 'gu');

function interestRegexWith(known: ReadonlySet<string>): RegExp {
  const extra = [...known].filter((k) => /^\p{Ll}[\p{L}\p{M}'’-]*$/u.test(k) && !FIRST_SET.has(k) && !WORD_NAME_SET.has(k));
  if (extra.length === 0) return INTEREST_RE;
  const known_ = String.raw`(?:${trieSource(extra)})(?:['’]s)?(?![\p{L}\p{M}])`;
  return new RegExp(`${CAP_TOKEN}|${INTRO_TOKEN}|${TITLE_TOKEN}|${LOWER_TOKEN}|${known_}`, 'gu');
}

// "R. de Vries", "J. K. Smith": initials, optional particles, a capitalised surname.
const INITIALS_RE =
  /\p{Lu}\.\s?(?:\p{Lu}\.\s?)?((?:(?:de|van|von|der|den|du|da|di|le|la|ter|ten|del|dos)\s){0,2})(\p{Lu}[\p{Ll}\p{M}'’-]+)/uy;

class Scan {
  private scripture: boolean | undefined;
  private fiction: boolean | undefined;
  private biblical: number | undefined;
  readonly known: Set<string>;
  lastNameEnd = -10;

  constructor(
    readonly text: string,
    known: ReadonlySet<string> | undefined,
  ) {
    this.known = new Set(known);
  }

  inScripture(): boolean {
    return (this.scripture ??= isScriptureContext(this.text));
  }
  inFiction(): boolean {
    return (this.fiction ??= FICTION_CONTEXT.test(this.text));
  }
  /** Distinct biblical names written capitalised in the text (Ruth … Naomi, Abraham … Isaac). */
  biblicalNames(): number {
    if (this.biblical === undefined) {
      const seen = new Set<string>();
      for (const m of this.text.matchAll(/\p{Lu}\p{Ll}+/gu)) {
        const w = m[0].toLowerCase();
        if (BIBLICAL_SET.has(w)) seen.add(w);
      }
      this.biblical = seen.size;
    }
    return this.biblical;
  }
  /** The sentence that starts at `from` speaks to "you". */
  secondPersonAfter(from: number): boolean {
    const rest = this.text.slice(from, from + 160);
    const stop = rest.search(/[.!?\n]/);
    return /\b(?:you|your|you're|you’re)\b/i.test(stop === -1 ? rest : rest.slice(0, stop + 1));
  }
}

export function findPersons(text: string, out: Candidate[], opts: PersonOptions = {}): void {
  const scan = new Scan(text, opts.knownNames);
  const re = scan.known.size > 0 ? interestRegexWith(scan.known) : INTEREST_RE;
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const group = m[1] ?? m[2];
    const start = group === undefined ? m.index : m.index + m[0].length - group.length;
    if (start > 0 && isWordCharAt(text, start - 1)) continue; // inside a word (iPhone, atom)
    const tok = makeToken(text, start, group ?? m[0]);
    const span = tok.text.length === 1 ? initials(scan, tok) : decide(scan, tok);
    if (!span) {
      if (group !== undefined) re.lastIndex = tok.end;
      continue;
    }
    out.push({ type: 'PERSON', start: span.start, end: span.end, priority: PRIORITY.PERSON });
    for (const part of text.slice(span.start, span.end).toLowerCase().split(/[\s.]+/)) if (part) scan.known.add(part);
    scan.lastNameEnd = span.end;
    re.lastIndex = span.end;
  }
}

function initials(scan: Scan, tok: Token): { start: number; end: number } | null {
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

function decide(scan: Scan, tok: Token): { start: number; end: number } | null {
  const { text, known } = scan;
  const { lower, cap } = tok;
  if (allCaps(tok.text) && !FIRST_SET.has(lower)) return null;
  const isKnown = known.has(lower);
  if (NOT_NAME_SET.has(lower) && !isKnown) return null;
  const isFirst = FIRST_SET.has(lower);
  const isWordName = WORD_NAME_SET.has(lower);
  const isSurname = SURNAME_SET.has(lower);
  const initial = cap && isSentenceInitial(text, tok.start);
  // A capitalised word in no list at the start of a sentence has no cue in front of it: not a name. This is
  // most capitalised tokens, so it is settled before any cue is read.
  if (cap && initial && !isFirst && !isWordName && !isSurname && !isKnown) return null;

  const before = wordsBefore(text, tok.start);
  const cue: Cue = cueBefore(text, tok.start, scan.lastNameEnd, before);
  const strong = cue === 'intro' || cue === 'relation' || cue === 'title';
  const afterAt = tok.end + possessiveLen(text, tok.end);
  const after = text.slice(tok.end, tok.end + 40);
  const next = adjacentToken(text, afterAt);
  const nextName = next && canContinue(next) && afterAt === tok.end ? next : null;
  const personAfter = () => RELATIONS_AFTER_RE.test(after) || PERSON_PHRASE_AFTER.test(after);
  if (next && next.cap && INSTITUTION_SET.has(next.lower)) return null; // Khan Academy, Patel Pharmacy

  let ok: boolean;
  if (cap) {
    if (isFirst || isKnown) ok = true;
    else if (isWordName && ABSTRACT_NAMES.has(lower))
      ok =
        strong ||
        cue === 'iam' ||
        cue === 'chain' ||
        (cue === 'greeting' && END_OF_NAME.test(after)) ||
        personAfter() ||
        (nextName !== null && SURNAME_SET.has(nextName.lower)) ||
        SPEECH_AFTER.test(after);
    else if (isWordName)
      ok =
        strong ||
        cue === 'iam' ||
        cue === 'chain' ||
        (cue === 'greeting' && END_OF_NAME.test(after)) ||
        (cue === 'weak' && !initial) ||
        personAfter() ||
        (nextName !== null && (SURNAME_SET.has(nextName.lower) || !initial)) ||
        (NAME_VERB_AFTER.test(after) && !/^\s+(?:is|was)\b/i.test(after));
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
        (!initial && personAfter()) ||
        (cue === 'greeting' && /^\s*[,!]/.test(after)) ||
        // An unknown word before a known surname: "Chidubem Okafor" (not "from São Paulo", not a German compound).
        (nextName !== null &&
          !initial &&
          tok.text.length <= 12 &&
          SURNAME_SET.has(nextName.lower) &&
          !SURNAME_WORD_SET.has(nextName.lower) &&
          !['from', 'in', 'at', 'to', 'near', 'visit', 'visited'].includes(before[0] ?? ''));
  } else if (isFirst) ok = !LOWER_UNSAFE_SET.has(lower) || strong || cue === 'iam' || cue === 'greeting';
  else if (isWordName)
    ok =
      (strong && !looksLikeVerbPhrase(after)) ||
      (cue === 'iam' && !ADJECTIVE_NAMES.has(lower) && END_OF_NAME.test(after)) ||
      (before.length === 0 && PAST_VERB_AFTER.test(after) && !ADJECTIVE_NAMES.has(lower));
  else if (isKnown) ok = !LOWER_UNSAFE_SET.has(lower);
  else
    ok =
      (cue === 'intro' || (cue === 'title' && STRICT_TITLES.has(before[0]!.replace(/\.$/, '')))) &&
      lower.length > 1;
  if (!ok) return null;

  // Extend over surnames and middle names: capitalised tokens, particles before a capitalised token, or lowercase
  // surnames in a lowercase name ("sarah jones").
  let end = tok.end;
  let count = 1;
  let cur = afterAt === tok.end ? adjacentToken(text, afterAt) : null; // "Noah's Chromebook" is not a surname
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
  scan: Scan,
  tok: Token,
  end: number,
  count: number,
  cue: Cue,
  before: string[],
  after: string,
): boolean {
  const { text } = scan;
  const lower = tok.lower;
  const privateCue = cue === 'relation' || cue === 'intro' || cue === 'iam';
  const full = text.slice(tok.start, end).toLowerCase().replace(/\s+/g, ' ');
  const lastWord = full.slice(full.lastIndexOf(' ') + 1);
  // Famous full names, also when the surname did not extend the span ("is harry potter real").
  const nextWord = /^\s+([\p{L}\p{M}'’-]+)/u.exec(text.slice(end, end + 30))?.[1]?.toLowerCase();
  if (FAMOUS_FULL_SET.has(full) || (nextWord && FAMOUS_FULL_SET.has(`${full} ${nextWord}`))) return !privateCue;
  if (count > 1 ? FAMOUS_SET.has(lastWord) : FAMOUS_SET.has(lower)) return !privateCue;
  if (privateCue) return false;

  const ctx = before.slice(0, 3).reverse().join(' ') + ' ';
  if (count === 1 && REGNAL_AFTER.test(text.slice(end, end + 8))) return true; // Henry VIII, Elizabeth I
  if (FIGURE_BEFORE_CUE.test(ctx) && cue !== 'title') return true; // King David, St Paul, the letters of Paul
  if ((FICTIONAL_SET.has(full) || FICTIONAL_SET.has(lower)) && scan.inFiction()) return true;
  if (before[0] === 'by' && scan.inFiction()) return true; // an author credit: "by Eric Carle"
  if (count === 1 && BIBLICAL_SET.has(lower)) {
    if (BIBLICAL_AFTER_CUE.test(after)) return true;
    if (STRONGLY_BIBLICAL_SET.has(lower)) return true;
    // In a text about the Bible, a biblical name is the figure unless a title marks a living person (Pastor John).
    if ((scan.inScripture() || scan.biblicalNames() >= 2) && cue !== 'title') return true;
    // "Ruth, how did you leave everything…": a biblical figure addressed in a role-play.
    if (cue === 'none' && isSentenceInitial(text, tok.start) && /^,\s/.test(after) && scan.secondPersonAfter(end))
      return true;
  }
  return false;
}

/**
 * After "my son will…" a word-name is a name only when what follows reads like it: punctuation, the end, or a
 * verb in the third person or past ("my son will be 5" is a modal verb).
 */
function looksLikeVerbPhrase(after: string): boolean {
  if (/^\s*(?:[,.!?;:)]|$)/.test(after)) return false;
  if (/^\s+(?:is|was|has|had|and|who|'s|’s|said|says|loves|likes|turned|turns)\b/i.test(after)) return false;
  const w = /^\s+([a-z']+)/i.exec(after);
  return !w || !/(?:s|ed)$/.test(w[1]!);
}

