import { z } from 'zod';

/** The most characters one text field (a turn, a prompt, a correction) may hold. */
export const MAX_TEXT_CHARS = 100_000;

// C0 controls other than \t \n \r, and DEL. U+0000 is among them: PostgreSQL text and jsonb cannot hold it at all.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;
// A high surrogate not followed by a low one, or a low one not preceded by a high one. `\ud800` escapes in JSON
// parse to these; PostgreSQL rejects them in jsonb (a 500 if left to the database), and they are not text.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const codePoint = (c: string) => `U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Why `s` is not acceptable text, or null. Shared by every string tuneloop stores from an app (turns, ids,
 * subjects, metadata keys and values, feedback), so the API and the importer refuse exactly the same input.
 */
export function textProblem(s: string, opts: { allowBlank?: boolean } = {}): string | null {
  const control = CONTROL.exec(s);
  if (control)
    return `contains the control character ${codePoint(control[0])} at offset ${control.index}; only tab, line feed and carriage return are allowed`;
  const lone = LONE_SURROGATE.exec(s);
  if (lone)
    return `contains an unpaired UTF-16 surrogate ${codePoint(lone[0])} at offset ${lone.index}; not valid Unicode`;
  if (!opts.allowBlank && s.trim() === '') return s === '' ? 'must not be empty' : 'must not be whitespace only';
  return null;
}

/**
 * A text field: not blank, no control characters, valid Unicode, at most `max` characters. `allowEmpty` lets the
 * empty string through (and only it: whitespace alone is still refused).
 */
export function text(max = MAX_TEXT_CHARS, opts: { allowEmpty?: boolean } = {}) {
  return z
    .string()
    .max(max, `at most ${max} characters`)
    .superRefine((s, ctx) => {
      // Past the cap the string is refused already; scanning megabytes for a second complaint is waste.
      if (s.length > max || (opts.allowEmpty && s === '')) return;
      const problem = textProblem(s);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    });
}

/** Ids that start so are tuneloop's own (the synthesize stage's subject and rows): an app cannot take them. */
export const RESERVED_ID_PREFIX = 'tuneloop:';

/** An identifier an app chooses (its interaction or feedback id, its user's pseudonymous id). */
export const externalId = text(200).refine((s) => !s.startsWith(RESERVED_ID_PREFIX), {
  message: `ids starting with "${RESERVED_ID_PREFIX}" are tuneloop's own`,
});
