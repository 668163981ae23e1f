/**
 * `tuneloop anonymize`: redacts JSONL from stdin to stdout with the PII engine, one line at a time.
 *
 *   tuneloop anonymize < turns.jsonl > redacted.jsonl
 *
 * Each input line is an object with a string `text`; each output line is `{"text": redacted, "entities": [...]}`
 * with entity offsets into the input string, or `{"error": "line N: …", "line": N}` for a line that cannot be read.
 * Blank lines are skipped. Every line is its own redaction scope (placeholders restart at 1).
 */
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { createRedactor } from '../pii';

export interface AnonymizeSummary {
  /** Non-blank input lines read (each produced one output line). */
  lines: number;
  /** Of those, lines answered with an error object. */
  errors: number;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** The output line for one input line (without the newline). */
export function anonymizeLine(raw: string, lineNo: number): { out: string; error: boolean } {
  const fail = (what: string) => ({
    out: JSON.stringify({ error: `line ${lineNo}: ${what}`, line: lineNo }),
    error: true,
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    return fail(`invalid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return fail(`expected a JSON object, got ${describe(parsed)}`);
  if (!('text' in parsed)) return fail('missing "text"');
  const text = (parsed as { text: unknown }).text;
  if (typeof text !== 'string') return fail(`"text" must be a string, got ${describe(text)}`);
  const { text: redacted, entities } = createRedactor().redact(text);
  return {
    out: JSON.stringify({ text: redacted, entities: entities.map(({ type, start, end }) => ({ type, start, end })) }),
    error: false,
  };
}

/** Resolves when `output` can take more (drain), or rejects when it fails or closes first. */
async function drained(output: NodeJS.WritableStream): Promise<void> {
  const ac = new AbortController();
  try {
    await Promise.race([
      once(output, 'drain', { signal: ac.signal }),
      once(output, 'close', { signal: ac.signal }).then(() => {
        throw new Error('output closed before all lines were written');
      }),
    ]);
  } finally {
    ac.abort();
  }
}

/**
 * Streams JSONL from `input` to `output`, redacting each line's `text`. Memory stays bounded by the longest line:
 * lines are read one at a time and writing waits for the output to drain. Bad lines become error lines; this
 * never throws for bad input (only when the output itself fails).
 */
export async function anonymizeStream(
  input: NodeJS.ReadableStream,
  output: NodeJS.WritableStream,
): Promise<AnonymizeSummary> {
  const rl = createInterface({ input, crlfDelay: Infinity, terminal: false });
  let lineNo = 0;
  let lines = 0;
  let errors = 0;
  try {
    for await (const raw of rl) {
      lineNo++;
      if (raw.trim() === '') continue;
      const { out, error } = anonymizeLine(raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw, lineNo);
      lines++;
      if (error) errors++;
      if (!output.write(out + '\n')) await drained(output);
    }
  } finally {
    rl.close();
  }
  return { lines, errors };
}
