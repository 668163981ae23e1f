import { canonicalize, interactionSchema, type CanonicalInteraction } from './interaction';
import { describeIssue, fieldIssues } from './issues';
import { describeInvalidUtf8, invalidUtf8InJson } from './utf8';

/** The longest line `tuneloop import` reads; a longer one is refused without being held in memory. */
export const MAX_LINE_BYTES = 4 * 1024 * 1024;

export interface RawLine {
  /** 1-based. */
  line: number;
  /** The line's text without its line ending, or null when it could not be read as text (see `error`). */
  text: string | null;
  error: string | null;
  /** Bytes the line held in the file, line ending excluded. */
  bytes: number;
}

/**
 * Splits a byte stream into lines, holding at most one line of `maxBytes` in memory however large the stream.
 * Bytes rather than node:readline: readline would buffer an arbitrarily long line whole and turn bytes that are not
 * UTF-8 into U+FFFD silently; here an over-long line is skipped as it streams by and bad UTF-8 is reported with
 * the field it is in.
 */
export async function* splitLines(
  chunks: AsyncIterable<Uint8Array>,
  maxBytes = MAX_LINE_BYTES,
): AsyncGenerator<RawLine> {
  const decoder = new TextDecoder('utf-8');
  let parts: Uint8Array[] = [];
  let bytes = 0;
  let line = 0;
  const finish = (): RawLine => {
    line++;
    const n = bytes;
    const held = parts;
    parts = [];
    bytes = 0;
    if (n > maxBytes) return { line, text: null, error: `longer than ${maxBytes} bytes`, bytes: n };
    const whole = held.length === 1 ? held[0]! : Buffer.concat(held);
    const bad = invalidUtf8InJson(whole);
    if (bad) return { line, text: null, error: describeInvalidUtf8(bad), bytes: n };
    let text = decoder.decode(whole);
    // CRLF files; a byte-order mark at the start of the file (TextDecoder drops it only where a decode starts).
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    return { line, text, error: null, bytes: n };
  };
  for await (const chunk of chunks) {
    let start = 0;
    while (start <= chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      if (end > start) {
        // Past the cap the line is only counted, not kept.
        if (bytes + (end - start) <= maxBytes) parts.push(chunk.subarray(start, end));
        else parts = [];
        bytes += end - start;
      }
      if (nl === -1) break;
      yield finish();
      start = nl + 1;
    }
  }
  if (bytes > 0) yield finish();
}

export type LineResult = { ok: true; value: CanonicalInteraction } | { ok: false; error: string };

const cap = (s: string, n = 500) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * One line of an import file: a JSON object in any interaction shape, validated by the API's own schema. `model` may
 * be left out (it is the import's) or must equal it.
 */
export function parseImportLine(text: string, model: string): LineResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: cap(`not valid JSON: ${err instanceof Error ? err.message : String(err)}`, 200) };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return { ok: false, error: 'expected a JSON object (one interaction per line)' };
  const given = (raw as { model?: unknown }).model;
  if (given !== undefined && given !== model)
    return {
      ok: false,
      error: cap(`model: this line is for ${JSON.stringify(given)}, the import is for "${model}" (--model)`),
    };
  // Spread defines properties (it does not assign), so a `__proto__` key in the line stays an ordinary key.
  const res = interactionSchema.safeParse({ ...raw, model });
  if (!res.success) return { ok: false, error: cap(describeIssue(fieldIssues(res.error)[0]!)) };
  return { ok: true, value: canonicalize(res.data) };
}
