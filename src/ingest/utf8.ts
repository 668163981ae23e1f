import { isUtf8 } from 'node:buffer';

/**
 * Where bytes that claim to be UTF-8 are not, so that a caller can be told which field to fix instead of having its
 * text silently changed into U+FFFD (what every lossy decoder, body-parser's included, does).
 */

/** Byte offset of the first ill-formed UTF-8 sequence (Unicode's rules: no overlongs, surrogates or > U+10FFFF), or -1. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  if (isUtf8(bytes)) return -1;
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    // Allowed range of the second byte for each lead byte (Unicode Table 3-7), and the sequence's length.
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    if (i + len > bytes.length) return i;
    const second = bytes[i + 1]!;
    if (second < lo || second > hi) return i;
    for (let k = 2; k < len; k++) {
      const c = bytes[i + k]!;
      if (c < 0x80 || c > 0xbf) return i;
    }
    i += len;
  }
  return -1;
}

/**
 * The path of the JSON value (or key) that byte `offset` of a JSON document falls in, as the API names fields:
 * `messages.1.content`, with `key: true` when the byte is inside that object key itself. Empty for the top level.
 * Only structural ASCII is looked at, so it works on documents that are not valid UTF-8 (bytes ≥ 0x80 occur only
 * inside strings in JSON) and on ones cut short.
 */
export function jsonPathAt(bytes: Uint8Array, offset: number): { path: string; key: boolean } {
  type Frame = { kind: 'object'; key: string | null; expectKey: boolean } | { kind: 'array'; index: number };
  const stack: Frame[] = [];
  const pathOf = (extraKey?: string) => {
    const parts: string[] = [];
    for (const f of stack) {
      if (f.kind === 'array') parts.push(String(f.index));
      else if (f.key !== null && !f.expectKey) parts.push(f.key);
    }
    if (extraKey !== undefined) parts.push(extraKey);
    return parts.join('.');
  };
  let i = 0;
  while (i < bytes.length && i <= offset) {
    const b = bytes[i]!;
    if (b === 0x22) {
      // A string: find its end, skipping escaped characters.
      const start = i + 1;
      let end = start;
      while (end < bytes.length && bytes[end] !== 0x22) end += bytes[end] === 0x5c ? 2 : 1;
      const top = stack[stack.length - 1];
      const isKey = top?.kind === 'object' && top.expectKey;
      if (offset >= start && offset <= end) {
        return isKey ? { path: pathOf(readKey(bytes, start, end)), key: true } : { path: pathOf(), key: false };
      }
      if (isKey) top.key = readKey(bytes, start, end);
      i = end + 1;
      continue;
    }
    const top = stack[stack.length - 1];
    if (b === 0x7b) stack.push({ kind: 'object', key: null, expectKey: true });
    else if (b === 0x5b) stack.push({ kind: 'array', index: 0 });
    else if (b === 0x7d || b === 0x5d) stack.pop();
    else if (b === 0x3a && top?.kind === 'object') top.expectKey = false;
    else if (b === 0x2c && top) {
      if (top.kind === 'array') top.index++;
      else top.expectKey = true;
    }
    i++;
  }
  return { path: pathOf(), key: false };
}

function readKey(bytes: Uint8Array, start: number, end: number): string {
  const raw = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('utf8');
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return raw;
  }
}

/** Where a JSON document's bytes stop being UTF-8: the offset, the byte there and the field it is in. */
export interface InvalidUtf8 {
  offset: number;
  byte: number;
  /** The field's path under `where` (`body.messages.1.content`), or `where` itself at the top level ('' without). */
  field: string;
  /** The bad byte is inside the field's key, not its value. */
  key: boolean;
}

/** Where a JSON document's bytes stop being UTF-8, with the field it happens in named under `where`; null if valid. */
export function invalidUtf8InJson(bytes: Uint8Array, where = ''): InvalidUtf8 | null {
  const offset = firstInvalidUtf8(bytes);
  if (offset < 0) return null;
  const at = jsonPathAt(bytes, offset);
  return { offset, byte: bytes[offset]!, field: [where, at.path].filter(Boolean).join('.'), key: at.key };
}

/** "body.messages.1.content: not valid UTF-8 (byte 0xFF at offset 12)". */
export function describeInvalidUtf8(bad: InvalidUtf8): string {
  const hex = bad.byte.toString(16).toUpperCase().padStart(2, '0');
  const what = `not valid UTF-8 (byte 0x${hex} at offset ${bad.offset})`;
  return bad.field ? `${bad.field}${bad.key ? ' (its key)' : ''}: ${what}` : what;
}
