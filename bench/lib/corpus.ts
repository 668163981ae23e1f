/**
 * A realistic synthetic corpus of app interactions for benchmarks: chat turns from the five kinds of apps
 * tuneloop serves, in all three shapes apps log, about one in eight carrying personal data (names, emails,
 * phones, addresses, card numbers) the way users actually type it. Deterministic for a given seed.
 */

/** mulberry32: small, fast, seedable. */
export function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIRST = [
  'Sarah',
  'James',
  'Aisha',
  'Tom',
  'Priya',
  'Liam',
  'Chloe',
  'Mohammed',
  'Emma',
  'Oluwaseun',
  'Zoë',
  'Daniel',
  'Grace',
  'Mateo',
  'Hannah',
  'Kwame',
];
const LAST = ['Connolly', 'Patel', 'Nguyen', 'Smith', 'Okafor', 'Garcia', 'Müller', 'Kowalski', 'Brennan', 'Haddad'];
const STREETS = ['Baker Street', 'Elm Avenue', 'Station Road', 'Maple Drive', 'High Street', 'Oak Lane'];

const DOMAINS = {
  fitness: {
    user: [
      'How many sets of squats should I do this week? I managed {n} reps at {kg} kg yesterday.',
      'My resting heart rate is {bpm} bpm, is that okay for a {age} year old?',
      'I ran 5k in {min}:{sec}. What should my next goal be?',
      'Knees hurt after lunges, what should I change in my form?',
      'Can you plan {n} sessions for me, I only have dumbbells at home?',
    ],
    assistant: [
      'Try 4 sets of {n} at {kg} kg, resting 90 seconds between sets, and add 2.5 kg when all sets feel easy.',
      'A resting heart rate of {bpm} bpm is within the normal range; keep an eye on trends rather than single readings.',
      'Aim for a steady pace around {min}:{sec} per km for your easy runs, and add one interval session a week.',
      'Keep your front knee over your ankle, shorten the stride a little and slow the descent to three seconds.',
      'Day 1: goblet squats 3x12, rows 3x10. Day 2: presses 3x10, lunges 3x8 each side. Rest between sets 60 s.',
    ],
  },
  wellbeing: {
    user: [
      'I have been feeling anxious before work every morning this week.',
      'I could not sleep again, maybe {n} hours in total. Everything feels heavy.',
      'Talking to my sister helped a bit but I still feel on edge.',
      'Can you remind me of that breathing exercise from last time?',
    ],
    assistant: [
      'That sounds exhausting. Would it help to try a short grounding exercise together before you start work?',
      'I am sorry the nights have been so hard. Let us look at what the evening before looked like, step by step.',
      'It is good that you reached out to her. What part of the day feels most on edge for you?',
      'Breathe in for 4 counts, hold for 7, and out for 8. Repeat it {n} times and notice how your shoulders feel.',
    ],
  },
  tutoring: {
    user: [
      'How do I solve {a}x + {b} = {c}?',
      'What is the difference between a simile and a metaphor?',
      'Can you check my answer: {a} times {b} is {c}?',
      'Why did the Roman Empire split in two?',
    ],
    assistant: [
      'Subtract {b} from both sides, then divide by {a}. Try it and tell me what you get for x.',
      'A simile compares using "like" or "as"; a metaphor says one thing is another. Can you write one of each?',
      'Let us check it together: multiply {a} by {b} step by step and compare with your {c}.',
      'It was too large to govern from one place, so in 285 Diocletian divided the administration between east and west.',
    ],
  },
  scripture: {
    user: [
      'Paul, what did you mean in Romans 8:28?',
      'How should I read Psalm 23 when I feel alone?',
      'What does 1 Corinthians 13:4-7 say about patience?',
    ],
    assistant: [
      'I wrote that all things work together for good for those who love God: it is a promise of purpose, not of ease.',
      'Read it slowly, one line a day. The shepherd walks with you through the valley, not around it.',
      'Love is patient and kind. Patience there means bearing with others long after it would be easy to stop.',
    ],
  },
  challenge: {
    user: ['Give me a {n}-day challenge for drinking more water.', 'I want a hard puzzle about prime numbers.'],
    assistant: [
      'Day 1: one glass on waking. Each day add one more glass before noon, up to {n} by the end.',
      'Find the smallest prime p such that p + 2, p + 6 and p + 8 are also prime. Hint: start below 20.',
    ],
  },
} as const;

const PII = [
  'By the way my name is {first} {last}, you can email me at {email}.',
  'Text me on 07700 {d6} if anything changes.',
  'I live at {house} {street}, London SW1A 1AA, if the coach needs to post it.',
  'My card is 4111 1111 1111 1111 but I do not want to pay yet.',
  'My friend {first} says hi, she is on instagram @{handle}.',
];

export interface CorpusLine {
  id: string;
  subject: string;
  messages?: { role: 'user' | 'assistant'; content: string }[];
  prompt?: string;
  completion?: string;
  instruction?: string;
  output?: string;
  metadata: { category: string; difficulty?: number };
}

export function* corpus(rows: number, seed = 42): Generator<CorpusLine> {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const num = (lo: number, hi: number) => String(lo + Math.floor(r() * (hi - lo + 1)));
  const fill = (t: string) =>
    t.replace(/\{(\w+)\}/g, (_m, k: string) => {
      switch (k) {
        case 'n':
          return num(3, 12);
        case 'kg':
          return num(10, 120);
        case 'bpm':
          return num(48, 90);
        case 'age':
          return num(18, 70);
        case 'min':
          return num(20, 35);
        case 'sec':
          return num(10, 59);
        case 'a':
          return num(2, 9);
        case 'b':
        case 'c':
          return num(10, 99);
        case 'first':
          return pick(FIRST);
        case 'last':
          return pick(LAST);
        case 'email':
          return `${pick(FIRST).toLowerCase()}.${num(1, 99)}@example.org`;
        case 'd6':
          return num(100000, 999999);
        case 'house':
          return num(1, 240);
        case 'street':
          return pick(STREETS);
        case 'handle':
          return `${pick(FIRST).toLowerCase()}_runs`;
        default:
          return k;
      }
    });
  const domains = Object.keys(DOMAINS) as (keyof typeof DOMAINS)[];
  for (let i = 0; i < rows; i++) {
    const domain = pick(domains);
    const d = DOMAINS[domain];
    const turns = 1 + Math.floor(r() * 3);
    const messages: { role: 'user' | 'assistant'; content: string }[] = [];
    for (let t = 0; t < turns; t++) {
      let user = fill(pick(d.user));
      if (r() < 0.12) user += ' ' + fill(pick(PII));
      messages.push({ role: 'user', content: user }, { role: 'assistant', content: fill(pick(d.assistant)) });
    }
    const base = { id: `c${i}`, subject: `u${Math.floor((r() * rows) / 20)}`, metadata: { category: domain } };
    const shape = r();
    if (shape < 0.8) yield { ...base, messages };
    else if (shape < 0.9) yield { ...base, prompt: messages[0]!.content, completion: messages[1]!.content };
    else yield { ...base, instruction: messages[0]!.content, output: messages[1]!.content };
  }
}
