/**
 * The words in front of a name that say "a private person comes next". Read from the (at most four) words before
 * the token with Set lookups: regexes anchored at the end of a context string cost too much on every capitalised
 * word.
 */
import { foldCode, HashFlags, isLetterAt, isWordCharAt, wordHash } from './text-utils';

export type Cue = 'intro' | 'iam' | 'relation' | 'title' | 'greeting' | 'weak' | 'chain' | 'none';

const set = (s: string) => new Set(s.split(/\s+/).filter(Boolean));

/** Honorifics and roles used as titles; the title itself is never part of the name span. */
export const TITLES = set(`mr mrs ms miss mx dr doctor prof professor coach pastor rev reverend fr nurse officer sgt
  sergeant captain capt aunt auntie aunty uncle nan nana nanna grandma grandpa granny grandad sir dame madam mister
  señor senora señora frau herr mme mlle sheikh sensei teacher cllr councillor detective`);
/** Titles after which even a lowercase word is a surname (chat: "my teacher mr okonkwo"). */
export const STRICT_TITLES = set(`mr mrs ms mx`);
const RELATIONS = set(`son sons daughter daughters wife husband partner boyfriend girlfriend fiance fiancé fiancee
  fiancée spouse friend friends mate mates bestie bff mum mom mummy mommy mother dad daddy father brother brothers sister
  sisters sibling siblings cousin cousins aunt aunty auntie uncle nan nana nanna gran granny grandma grandad granddad
  grandpa grandmother grandfather grandson granddaughter grandchild grandkids nephew niece child children kid kids baby
  babies boy boys girl girls toddler teen teenager stepson stepdaughter stepmum stepmom stepdad boss manager
  supervisor colleague colleagues coworker co-worker neighbour neighbor flatmate roommate housemate teacher tutor coach
  trainer therapist counsellor counselor psychologist psychiatrist doctor gp consultant nurse midwife pastor vicar
  priest minister rabbi imam client student pupil classmate ex carer caregiver landlord landlady pt physio mentor
  sponsor buddy pal twin twins in-law guy lad bloke date crush paramedic surgeon dentist lawyer solicitor accountant
  advisor adviser caseworker worker teammate captain referee mentee godson goddaughter godmother godfather ward bf gf
  hubby wifey sis bro hubs fiancé grandchildren partner's mum's dad's`);
const POSSESSIVES = set(`my our his her their your ur me mine`);
const RELATION_ADJECTIVES = set(`best little big older younger eldest oldest youngest new old ex late dear lovely
  wonderful amazing step twin baby close former current other favourite favorite only elder middle first second third
  fourth 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 year-old yo 3yo 4yo 5yo 6yo 7yo 8yo 9yo 10yo two three four five six
  seven eight nine ten running training gym work school uni football social key beautiful sweet`);
const INTRO_WORDS = set(`named called signed sincerely regards xoxo`);
const GREETINGS = set(`dear hi hello hey hiya heya yo morning evening afternoon night thanks thankyou thx ty cheers bye
  goodbye congrats congratulations welcome sorry ok okay oh ah listen look groeten groetjes gruß grüße liebe lieber
  saludos cordialement bises bisous ciao abrazos besos pozdrawiam hälsningar hilsen mvg vg lg salut hola hallo hej
  bonjour ola olá beannachtaí xx`);
const WEAK_WORDS = set(`with and & to from told tell tells asked ask asks met meet meeting saw see seeing texted text
  texting called call calling visit visited visiting invited invite miss missed love loves loved hug hugged for by about
  than as or nor like between including except w/ via thank thanked helped help helping married dating date dated marry
  left phoned messaged emailed blame blamed trust trusted forgive forgave lost losing adopted remind reminds reminded
  beat beats joined join hugging`);
const CALL_VERBS = set(`call calls called calling`);

const SKIP_TO_RELATION = set('is was are were called named');

/**
 * Every word that, right before an unknown capitalised word, may start a cue that makes it a name (of any kind:
 * strong, "I am", greeting, a relation read past "is", a list): a cheap filter before the cues are read in full.
 */
export const UNKNOWN_NAME_CUE_WORDS: readonly string[] = [
  ...TITLES,
  ...RELATIONS,
  ...INTRO_WORDS,
  ...GREETINGS,
  ...SKIP_TO_RELATION,
  "i'm",
  'i’m',
  'im',
  'am',
  "name's",
  'name’s',
  'as',
  'by',
  'you',
  'done',
  'luck',
  'birthday',
  'and',
  '&',
  'me',
  'its',
  "it's",
  'it’s',
];

// Words are compared by hash (the scanner's wordHash): no substring or lowercase copy per word read.
const TITLE = 1;
const RELATION = 2;
const POSSESSIVE = 4;
const REL_ADJ = 8;
const INTRO = 16;
const GREETING = 32;
const WEAK = 64;
const CALL = 128;
const SKIP_REL = 256;
const STRICT_TITLE = 512;
const CUE_FLAGS = new HashFlags(1 << 12);
for (const [words, flag] of [
  [TITLES, TITLE],
  [RELATIONS, RELATION],
  [POSSESSIVES, POSSESSIVE],
  [RELATION_ADJECTIVES, REL_ADJ],
  [INTRO_WORDS, INTRO],
  [GREETINGS, GREETING],
  [WEAK_WORDS, WEAK],
  [CALL_VERBS, CALL],
  [SKIP_TO_RELATION, SKIP_REL],
  [STRICT_TITLES, STRICT_TITLE],
] as const) {
  for (const w of words) CUE_FLAGS.add(wordHash(w), flag);
}
/** Hashes of single words the cues compare against. */
export const W = Object.fromEntries(
  [
    'is',
    'was',
    'are',
    'were',
    'called',
    'named',
    'name',
    "name's",
    'me',
    'as',
    'known',
    'by',
    'goes',
    'go',
    'and',
    '&',
    'i',
    "i'm",
    'im',
    'am',
    'its',
    "it's",
    "here's",
    'this',
    'it',
    'you',
    'thank',
    'birthday',
    'happy',
    'done',
    'well',
    'luck',
    'good',
    'like',
    'did',
  ].map((w) => [w, wordHash(w)]),
) as Record<string, number>;

/** A strict honorific (mr, mrs, ms, mx), after which even a lowercase word is a surname. */
export function isStrictTitle(h: number): boolean {
  return (CUE_FLAGS.get(h) & STRICT_TITLE) !== 0;
}

function mayBeRelation(w: number[]): boolean {
  for (const h of w) if ((CUE_FLAGS.get(h) & (RELATION | REL_ADJ | SKIP_REL)) !== 0) return true;
  return false;
}

const isEdgeMark = (c: number) => c === 45 || c === 39 || c === 0x2019;

/** Hash of text[j, i) lowercased, without leading or trailing hyphens and apostrophes. */
function hashRange(text: string, j: number, i: number): number {
  while (j < i && isEdgeMark(text.charCodeAt(j))) j++;
  while (i > j && isEdgeMark(text.charCodeAt(i - 1))) i--;
  let h = 0;
  for (let k = j; k < i; k++) h = (Math.imul(h, 31) + foldCode(text.charCodeAt(k))) | 0;
  return h;
}

/**
 * Hashes of up to four words before `start`, nearest first; stops at a sentence boundary or a newline. Past the
 * second word it reads on only when a relation may be in them ("my little brother Sam").
 */
export function wordsBefore(text: string, start: number): number[] {
  const out: number[] = [];
  let i = start;
  while (out.length < 4 && i > 0) {
    if (out.length === 2 && !mayBeRelation(out)) return out;
    // Skip separators between words.
    while (i > 0) {
      const c = text.charCodeAt(i - 1);
      if (c === 10) return out;
      if (c === 32 || c === 9 || c === 44 || c === 34 || c === 58 || c === 59 || c === 40 || c === 41 || c === 42) i--;
      else if (c === 0x201c || c === 0x201d || c === 0x2018 || c === 0xa0) i--;
      else break;
    }
    if (i === 0) break;
    const c = text.charCodeAt(i - 1);
    if (c === 46 || c === 33 || c === 63) {
      // "Dr. Okafor": a period after a title does not end the sentence.
      if (out.length > 0 || c !== 46) return out;
      let j = i - 1;
      while (j > 0 && isLetterAt(text, j - 1)) j--;
      const h = hashRange(text, j, i - 1);
      if ((CUE_FLAGS.get(h) & TITLE) === 0) return out;
      out.push(h);
      i = j;
      continue;
    }
    let j = i;
    while (j > 0) {
      const d = text.charCodeAt(j - 1);
      const ascii = (d >= 97 && d <= 122) || (d >= 65 && d <= 90) || (d >= 48 && d <= 57);
      if (ascii || d === 39 || d === 38 || d === 47 || d === 45 || (d >= 0xc0 && isWordCharAt(text, j - 1))) j--;
      else break;
    }
    if (j === i) return out;
    out.push(hashRange(text, j, i));
    i = j;
  }
  return out;
}

const CHAIN_CUE = /^(?:\s*,\s*|\s+(?:and|&|or|n|an|plus|with|\+)\s+|\s*\/\s*)$/;

/** The cue in front of a token starting at `start`; `lastNameEnd` is where the previous accepted name ended. */
export function cueBefore(text: string, start: number, lastNameEnd: number, w: number[]): Cue {
  if (lastNameEnd >= 0 && start - lastNameEnd <= 6 && CHAIN_CUE.test(text.slice(lastNameEnd, start))) return 'chain';
  const w1 = w[0] ?? 0;
  const w2 = w[1] ?? 0;
  const f1 = CUE_FLAGS.get(w1);
  if ((f1 & TITLE) !== 0) return 'title';
  // my son Tom / my little brother Sam / our eldest daughter, Grace / my son is Tom / my kids are Aarav and …
  const r = (f1 & SKIP_REL) !== 0 ? 1 : 0;
  if ((CUE_FLAGS.get(w[r] ?? 0) & RELATION) !== 0) {
    let p = r + 1;
    while (p < r + 3 && (CUE_FLAGS.get(w[p] ?? 0) & REL_ADJ) !== 0) p++;
    if ((CUE_FLAGS.get(w[p] ?? 0) & POSSESSIVE) !== 0) return 'relation';
  }
  if ((f1 & INTRO) !== 0) return 'intro';
  if ((w1 === W.is || w1 === W.was) && w2 === W.name) return 'intro';
  if (w1 === W["name's"] || (w1 === W.me && (CUE_FLAGS.get(w2) & CALL) !== 0) || (w1 === W.as && w2 === W.known))
    return 'intro';
  if (w1 === W.by && (w2 === W.goes || w2 === W.go)) return 'intro';
  // me and Dev / Sarah and I are handled as relations: "me and X" is said of people.
  if ((w1 === W.and || w1 === W['&']) && (w2 === W.me || w2 === W.i)) return 'relation';
  if (w1 === W["i'm"] || w1 === W.im || (w1 === W.am && w2 === W.i)) return 'iam';
  if (w1 === W.its && (w.length === 1 || (CUE_FLAGS.get(w2) & GREETING) !== 0)) return 'iam'; // "hey its mark again"
  if (w1 === W["it's"] || w1 === W["here's"] || (w1 === W.is && (w2 === W.this || w2 === W.it))) return 'iam';
  if ((f1 & GREETING) !== 0 || (w1 === W.you && w2 === W.thank) || (w1 === W.birthday && w2 === W.happy))
    return 'greeting';
  if ((w1 === W.done && w2 === W.well) || (w1 === W.luck && w2 === W.good)) return 'greeting';
  if ((f1 & WEAK) !== 0) return 'weak';
  return 'none';
}
