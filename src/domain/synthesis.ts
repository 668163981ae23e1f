/**
 * The synthesize stage's pure parts: which slot values a sample gets, the teacher's prompts, and the ids that make a
 * resumed or retried stage generate nothing twice.
 */
import { createHash } from 'node:crypto';
import type { ChatMessage } from './conversation';
import type { SynthesisSpec } from './model-config';

/** The subject synthetic conversations are stored under (an app cannot name it: ingest/text.ts). */
export const SYNTHETIC_SUBJECT = 'tuneloop:synthetic';
export const SYNTHETIC_SOURCE = 'synthetic';

/**
 * A spec's hash: what it asks for and of whom. Changing the prompt, a slot, the temperature or the teacher makes new
 * samples; renaming nothing else does (the count is how many, not what: raising it adds samples).
 */
export function specHash(spec: SynthesisSpec, teacher: string): string {
  const slots = Object.fromEntries(Object.entries(spec.slots).sort(([a], [b]) => (a < b ? -1 : 1)));
  return createHash('sha256')
    .update(JSON.stringify({ v: 1, prompt: spec.prompt, slots, temperature: spec.temperature, teacher }))
    .digest('hex');
}

/** A sample's app-side id: unique per model, the same on every attempt and run. */
export const sampleId = (hash: string, k: number) => `${SYNTHETIC_SUBJECT}:${hash.slice(0, 16)}:${k}`;
/** The prefix of every sample id of a spec. */
export const sampleIdPrefix = (hash: string) => `${SYNTHETIC_SUBJECT}:${hash.slice(0, 16)}:`;

/** Slot combinations of a spec: the product of its slots' sizes (1 with no slot). */
export function combinations(spec: SynthesisSpec): number {
  return Object.values(spec.slots).reduce((n, values) => n * values.length, 1);
}

/**
 * The slot values of sample k: samples walk every combination in turn (mixed-radix over the slots in name order)
 * before any combination comes twice.
 */
export function slotsOf(spec: SynthesisSpec, k: number): Record<string, string> {
  const names = Object.keys(spec.slots).sort();
  let rest = k % combinations(spec);
  const out: Record<string, string> = {};
  for (const name of names) {
    const values = spec.slots[name]!;
    out[name] = values[rest % values.length]!;
    rest = Math.floor(rest / values.length);
  }
  return out;
}

/** The spec's prompt with its slots filled. */
export function fillPrompt(prompt: string, slots: Record<string, string>): string {
  return prompt.replace(/\{([a-z][a-z0-9_]*)\}/g, (whole, name: string) => slots[name] ?? whole);
}

/** What the teacher is asked first: the user's message. */
export function userMessagePrompt(filled: string, sample: number): ChatMessage[] {
  return [
    {
      role: 'system',
      content:
        'You write the messages real users send to an app, one at a time, in their own words. Reply with the ' +
        'message only: no quotes, no preamble, no answer to it.',
    },
    // The sample number varies the request where a provider ignores the seed.
    { role: 'user', content: `${filled}\n(variation ${sample + 1})` },
  ];
}

/** What the teacher is asked second: the answer, as the app's assistant. */
export function answerPrompt(systemPrompt: string | null, userMessage: string): ChatMessage[] {
  return [
    ...(systemPrompt ? [{ role: 'system' as const, content: systemPrompt }] : []),
    { role: 'user', content: userMessage },
  ];
}

/** A user message the teacher wrote, cleaned: trimmed, surrounding quotes off; null when nothing is left. */
export function cleanUserMessage(text: string): string | null {
  const t = text
    .trim()
    .replace(/^["“']+|["”']+$/g, '')
    .trim();
  return t.length >= 2 ? t : null;
}
