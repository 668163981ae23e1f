// Writes the demo's sample (samples/demo/interactions.jsonl and consent.json): a day of FitCoach's traffic in which
// the coach answers in the app's house style, three labelled lines,
//
//   Plan: <what to do>
//   Why: <the reason>
//   Coach's tip: <one practical tip>
//
// which the base model (SmolLM2-135M-Instruct) does not write by itself. Deterministic: run it again and the files
// come out byte for byte the same.   node --import tsx samples/demo/make-sample.ts
import { writeFileSync } from 'node:fs';
import path from 'node:path';

interface Move {
  name: string;
  plan: Record<Level, string>;
  why: string;
  tip: string;
}
type Level = 'beginner' | 'intermediate' | 'advanced';

const MOVES: Move[] = [
  {
    name: 'push-ups',
    plan: {
      beginner: '3 sets of 5 push-ups from your knees, 60 seconds rest between sets.',
      intermediate: '4 sets of 12 push-ups, 60 seconds rest between sets.',
      advanced: '5 sets of 20 push-ups with a 3 second lowering phase, 90 seconds rest.',
    },
    why: 'push-ups build chest, shoulder and arm strength with no equipment.',
    tip: 'keep your body in one straight line from head to heels.',
  },
  {
    name: 'squats',
    plan: {
      beginner: '3 sets of 10 bodyweight squats to a chair, 60 seconds rest.',
      intermediate: '4 sets of 15 squats, pausing one second at the bottom.',
      advanced: '5 sets of 8 jump squats, 90 seconds rest between sets.',
    },
    why: 'squats strengthen your legs and hips for walking, running and lifting.',
    tip: 'push your knees out over your toes and keep your heels down.',
  },
  {
    name: 'lunges',
    plan: {
      beginner: '2 sets of 8 lunges per leg, holding a wall for balance.',
      intermediate: '3 sets of 12 walking lunges per leg, 60 seconds rest.',
      advanced: '4 sets of 10 reverse lunges per leg holding two water bottles.',
    },
    why: 'lunges train one leg at a time, which fixes imbalances between your sides.',
    tip: 'take a long enough step that your front knee stays above your ankle.',
  },
  {
    name: 'planks',
    plan: {
      beginner: '3 planks of 20 seconds on your forearms, 30 seconds rest.',
      intermediate: '3 planks of 45 seconds, then 2 side planks of 20 seconds per side.',
      advanced: '4 planks of 60 seconds, lifting one foot for the last 10 seconds.',
    },
    why: 'planks teach your core to hold your spine still, which protects your back.',
    tip: 'squeeze your glutes so your hips do not sag.',
  },
  {
    name: 'running',
    plan: {
      beginner: '20 minutes alternating 1 minute of easy running with 2 minutes of walking.',
      intermediate: '30 minutes of easy running at a pace where you can still talk.',
      advanced: '6 intervals of 3 minutes fast, each followed by 2 minutes of easy jogging.',
    },
    why: 'steady running builds your heart and lungs without wearing you out.',
    tip: 'land with your feet under your hips and keep your steps short.',
  },
  {
    name: 'deadlifts',
    plan: {
      beginner: '3 sets of 8 deadlifts with a light kettlebell, 90 seconds rest.',
      intermediate: '4 sets of 6 barbell deadlifts at a weight you could lift 8 times.',
      advanced: '5 sets of 3 heavy deadlifts, 3 minutes rest between sets.',
    },
    why: 'deadlifts strengthen your whole back side: hamstrings, glutes and back.',
    tip: 'keep the weight close to your legs and your back flat.',
  },
  {
    name: 'stretching',
    plan: {
      beginner: '10 minutes after training: hold each stretch for 30 seconds, twice.',
      intermediate: '15 minutes of stretching for hips, hamstrings and shoulders after training.',
      advanced: '20 minutes of mobility work with slow, controlled end-range holds.',
    },
    why: 'regular stretching keeps your joints moving through their full range.',
    tip: 'breathe out slowly as you ease deeper into each stretch.',
  },
  {
    name: 'cycling',
    plan: {
      beginner: '25 minutes of easy cycling on flat ground, twice a week.',
      intermediate: '45 minutes of cycling with 5 short hill climbs.',
      advanced: '8 sprints of 30 seconds, each followed by 90 seconds of easy pedalling.',
    },
    why: 'cycling builds endurance while being gentle on your knees.',
    tip: 'set the saddle so your knee is only slightly bent at the bottom.',
  },
  {
    name: 'pull-ups',
    plan: {
      beginner: '3 sets of 5 slow negative pull-ups, lowering for 5 seconds.',
      intermediate: '4 sets of 6 pull-ups, 2 minutes rest between sets.',
      advanced: '5 sets of 8 pull-ups with a 2 second pause at the top.',
    },
    why: 'pull-ups build your back and grip, balancing all the pushing work.',
    tip: 'start each rep by pulling your shoulder blades down.',
  },
  {
    name: 'swimming',
    plan: {
      beginner: '20 minutes: swim one length, rest 30 seconds, repeat.',
      intermediate: '30 minutes of front crawl in sets of 4 lengths.',
      advanced: '10 sets of 100 metres at a strong pace, 20 seconds rest each.',
    },
    why: 'swimming trains your whole body and your breathing at once.',
    tip: 'breathe out fully under water so you only need to breathe in above it.',
  },
];

const a = (l: Level) =>
  ({ beginner: 'a beginner', intermediate: 'an intermediate athlete', advanced: 'an advanced athlete' })[l];
const ASK: ((m: string, l: Level) => string)[] = [
  (m, l) => `I'm ${a(l)}. How should I start with ${m}?`,
  (m, l) => `Can you give me a ${m} plan for this week? I'm ${a(l)}.`,
  (m, l) => `What ${m} workout would you suggest for ${a(l)} like me?`,
  (m, l) => `I have half an hour today and I'm ${a(l)}. What should I do for ${m}?`,
  (m, l) => `How much ${m} should ${a(l)} do?`,
];
const LEVELS: Level[] = ['beginner', 'intermediate', 'advanced'];
// A few users say who they are, as real users do: anonymize replaces these with placeholders before training.
const INTROS = [
  "Hi, I'm Sarah Connolly (sarah.connolly@example.org). ",
  'Hello, this is Tom Becker, call me on 07700 900123 if needed. ',
  'Hey coach, Priya Raman here. ',
];
const SUBJECTS = 12;
const DECLINED = new Set(['user-004', 'user-009']);

const lines: string[] = [];
const heldOut: string[] = [];
let n = 0;
for (const [mi, move] of MOVES.entries()) {
  for (const [ai, ask] of ASK.entries()) {
    for (const [li, level] of LEVELS.entries()) {
      // 10 moves x 5 questions x 3 levels = 150 combinations; two thirds are in the sample, the rest are new
      // questions for the demo to ask afterwards.
      if ((mi + ai + li) % 3 === 2) {
        heldOut.push(ask(move.name, level));
        continue;
      }
      n++;
      const subject = `user-${String((n % SUBJECTS) + 1).padStart(3, '0')}`;
      const intro = n % 17 === 1 ? INTROS[((n / 17) % INTROS.length) | 0] : '';
      lines.push(
        JSON.stringify({
          id: `s${String(n).padStart(3, '0')}`,
          subject,
          messages: [
            { role: 'user', content: intro + ask(move.name, level) },
            {
              role: 'assistant',
              content: `Plan: ${move.plan[level]}\nWhy: ${capitalize(move.why)}\nCoach's tip: ${capitalize(move.tip)}`,
            },
          ],
          metadata: { category: 'coaching', move: move.name, level },
        }),
      );
    }
  }
}

function capitalize(s: string) {
  return s[0]!.toUpperCase() + s.slice(1);
}

const dir = import.meta.dirname;
writeFileSync(path.join(dir, 'interactions.jsonl'), lines.join('\n') + '\n');
// Questions no conversation of the sample asks: the demo asks the new version these.
writeFileSync(path.join(dir, 'held-out-questions.json'), JSON.stringify(heldOut, null, 2) + '\n');
const subjects = Object.fromEntries(
  Array.from({ length: SUBJECTS }, (_, i) => `user-${String(i + 1).padStart(3, '0')}`).map((s) => [
    s,
    !DECLINED.has(s),
  ]),
);
writeFileSync(path.join(dir, 'consent.json'), JSON.stringify({ policyVersion: '2026-11', subjects }, null, 2) + '\n');
console.log(
  `${lines.length} interactions, ${SUBJECTS} users (${DECLINED.size} have not consented to training), ` +
    `${heldOut.length} held-out questions`,
);
