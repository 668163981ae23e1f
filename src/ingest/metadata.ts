import { z } from 'zod';
import { textProblem } from './text';

/** Caps on an interaction's app metadata (category, difficulty, mood, context, …). */
export const METADATA_LIMITS = {
  /** UTF-8 bytes of the metadata serialized as JSON. */
  bytes: 16 * 1024,
  /** Containers deep, the metadata object itself being level 1: `{ a: { b: [1] } }` is 3 levels. */
  depth: 5,
  keyChars: 100,
} as const;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

type Issue = { path: (string | number)[]; message: string };

/** Walks a JSON value and reports what cannot be stored, by path. Values from JSON.parse are plain by construction. */
function jsonIssues(value: unknown, path: (string | number)[], level: number, out: Issue[]): void {
  if (out.length >= 10) return;
  if (value === null || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) out.push({ path, message: 'numbers must be finite' });
    return;
  }
  if (typeof value === 'string') {
    const problem = textProblem(value, { allowBlank: true });
    if (problem) out.push({ path, message: problem });
    return;
  }
  const isArray = Array.isArray(value);
  if (!isArray && !isPlainObject(value)) {
    out.push({ path, message: 'expected a JSON value: object, array, string, number, boolean or null' });
    return;
  }
  if (level > METADATA_LIMITS.depth) {
    out.push({ path, message: `nested deeper than ${METADATA_LIMITS.depth} levels` });
    return;
  }
  if (isArray) {
    value.forEach((v, i) => jsonIssues(v, [...path, i], level + 1, out));
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    const keyProblem =
      k.length > METADATA_LIMITS.keyChars ? `keys hold at most ${METADATA_LIMITS.keyChars} characters` : textProblem(k);
    if (keyProblem) out.push({ path: [...path, k], message: `key ${keyProblem}` });
    else jsonIssues(v, [...path, k], level + 1, out);
  }
}

/**
 * App metadata: a JSON object of any JSON values, kept as it came (no copy, so a `__proto__` key stays a key).
 * Refused with the path of the first problem: a non-object, a bad key, a string that is not storable text, nesting
 * past the depth cap, or more than the byte cap once serialized.
 */
export const metadataSchema = z
  .custom<Record<string, unknown>>(isPlainObject, { message: 'expected a JSON object' })
  .superRefine((m, ctx) => {
    const issues: Issue[] = [];
    jsonIssues(m, [], 1, issues);
    for (const i of issues) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
    if (issues.length) return;
    const bytes = Buffer.byteLength(JSON.stringify(m), 'utf8');
    if (bytes > METADATA_LIMITS.bytes)
      ctx.addIssue({ code: 'custom', message: `at most ${METADATA_LIMITS.bytes} bytes as JSON; this is ${bytes}` });
  })
  // What the check above is, in JSON Schema (the OpenAPI document's): a z.custom has no representation of its own.
  .meta({
    type: 'object',
    description: `Any JSON object, at most ${METADATA_LIMITS.bytes} bytes as JSON and ${METADATA_LIMITS.depth} levels deep; keys of at most ${METADATA_LIMITS.keyChars} characters; no control characters in keys or strings.`,
  });

/**
 * A conversation id (an episode) an app passes with each turn, kept in the turn's metadata as `conversation_id`:
 * feedback on the conversation lands on all of its turns.
 */
export const conversationIdSchema = z.string().regex(/^[\w.:-]{1,200}$/, 'letters, digits and . _ : -, at most 200');
