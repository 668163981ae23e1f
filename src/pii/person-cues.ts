/**
 * The words in front of a name that say "a private person comes next". Read from the (at most four) words before
 * the token with Set lookups: regexes anchored at the end of a context string cost too much on every capitalised
 * word.
 */
import { isLetterAt, isWordCharAt } from './text-utils';

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

/** Up to four words before `start`, nearest first, lowercased; stops at a sentence boundary or a newline. */
export function wordsBefore(text: string, start: number): string[] {
  const out: string[] = [];
  let i = start;
  while (out.length < 4 && i > 0) {
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
      const w = text.slice(j, i - 1).toLowerCase();
      if (!TITLES.has(w)) return out;
      out.push(w);
      i = j;
      continue;
    }
    let j = i;
    while (j > 0) {
      const d = text.charCodeAt(j - 1);
      if (isWordCharAt(text, j - 1) || d === 38 || d === 47 || d === 45) j--;
      else break;
    }
    if (j === i) return out;
    out.push(trimWord(text.slice(j, i).toLowerCase()));
    i = j;
  }
  return out;
}

function trimWord(w: string): string {
  let s = 0;
  let e = w.length;
  while (s < e && (w[s] === '-' || w[s] === "'" || w[s] === '’')) s++;
  while (e > s && (w[e - 1] === '-' || w[e - 1] === "'" || w[e - 1] === '’')) e--;
  return s === 0 && e === w.length ? w : w.slice(s, e);
}

const CHAIN_CUE = /^(?:\s*,\s*|\s+(?:and|&|or|n|an|plus|with|\+)\s+|\s*\/\s*)$/;

/** The cue in front of a token starting at `start`; `lastNameEnd` is where the previous accepted name ended. */
export function cueBefore(text: string, start: number, lastNameEnd: number, w: string[]): Cue {
  if (lastNameEnd >= 0 && start - lastNameEnd <= 6 && CHAIN_CUE.test(text.slice(lastNameEnd, start))) return 'chain';
  const [w1 = '', w2 = ''] = w;
  if (TITLES.has(w1)) return 'title';
  // my son Tom / my little brother Sam / our eldest daughter, Grace / my son is Tom / my kids are Aarav and …
  const r = w1 === 'is' || w1 === 'was' || w1 === 'are' || w1 === 'were' || w1 === 'called' || w1 === 'named' ? 1 : 0;
  if (RELATIONS.has(w[r] ?? '')) {
    let p = r + 1;
    while (p < r + 3 && RELATION_ADJECTIVES.has(w[p] ?? '')) p++;
    if (POSSESSIVES.has(w[p] ?? '')) return 'relation';
  }
  if (INTRO_WORDS.has(w1)) return 'intro';
  if ((w1 === 'is' || w1 === 'was') && w2 === 'name') return 'intro';
  if (w1 === "name's" || w1 === 'name’s' || (w1 === 'me' && CALL_VERBS.has(w2)) || (w1 === 'as' && w2 === 'known'))
    return 'intro';
  if (w1 === 'by' && (w2 === 'goes' || w2 === 'go')) return 'intro';
  // me and Dev / Sarah and I are handled as relations: "me and X" is said of people.
  if ((w1 === 'and' || w1 === '&') && (w2 === 'me' || w2 === 'i')) return 'relation';
  if (w1 === "i'm" || w1 === 'i’m' || w1 === 'im' || (w1 === 'am' && w2 === 'i')) return 'iam';
  if (w1 === 'its' && (w.length === 1 || GREETINGS.has(w2))) return 'iam'; // "hey its mark again"

  if (w1 === "it's" || w1 === 'it’s' || w1 === "here's" || (w1 === 'is' && (w2 === 'this' || w2 === 'it')))
    return 'iam';
  if (GREETINGS.has(w1) || (w1 === 'you' && w2 === 'thank') || (w1 === 'birthday' && w2 === 'happy')) return 'greeting';
  if ((w1 === 'done' && w2 === 'well') || (w1 === 'luck' && w2 === 'good')) return 'greeting';
  if (WEAK_WORDS.has(w1)) return 'weak';
  return 'none';
}
