import { describe, expect, it } from 'vitest';
import { describeInvalidUtf8, firstInvalidUtf8, invalidUtf8InJson, jsonPathAt } from '../../src/ingest/utf8';

const bytes = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

describe('firstInvalidUtf8', () => {
  it('accepts well-formed UTF-8 of every length, including the edges of the ranges', () => {
    const ok = bytes('a', 'é', '€', '😀', [0xf4, 0x8f, 0xbf, 0xbf], [0xed, 0x9f, 0xbf], [0xef, 0xbf, 0xbd]);

    expect(firstInvalidUtf8(ok)).toBe(-1);
  });

  it.each([
    ['a lone continuation byte', [0x61, 0x80], 1],
    ['0xFF', [0x61, 0x62, 0xff], 2],
    ['an overlong two-byte form', [0xc0, 0xaf], 0],
    ['an overlong three-byte form', [0xe0, 0x80, 0xaf], 0],
    ['an overlong four-byte form', [0xf0, 0x80, 0x80, 0xaf], 0],
    ['a UTF-16 surrogate', [0x61, 0xed, 0xa0, 0x80], 1],
    ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80], 0],
    ['a sequence cut short at the end', [0x61, 0xe2, 0x82], 1],
    ['a lead byte followed by ASCII', [0xe2, 0x41, 0x41], 0],
  ])('finds %s', (_what, input, offset) => {
    expect(firstInvalidUtf8(Uint8Array.from(input))).toBe(offset);
  });

  it('agrees with a fatal TextDecoder on random bytes', () => {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let n = 0; n < 2000; n++) {
      const input = Uint8Array.from({ length: 1 + Math.floor(rand() * 12) }, () =>
        rand() < 0.5 ? Math.floor(rand() * 0x80) : 0x80 + Math.floor(rand() * 0x80),
      );
      const offset = firstInvalidUtf8(input);
      let valid = true;
      try {
        decoder.decode(input);
      } catch {
        valid = false;
      }
      expect(offset === -1).toBe(valid);
      if (offset > 0) expect(() => decoder.decode(input.subarray(0, offset))).not.toThrow();
    }
  });
});

describe('jsonPathAt', () => {
  it('names the value a byte falls in, through objects and arrays', () => {
    const doc = bytes('{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"X"}]}');
    const at = doc.indexOf('X');

    expect(jsonPathAt(doc, at)).toEqual({ path: 'messages.1.content', key: false });
  });

  it('counts array items and object members past nested values and escaped quotes', () => {
    const doc = bytes('{"a":[1,{"b":"x\\",y"},[2,3],"Z"],"c":{"d":"e"}}');

    expect(jsonPathAt(doc, doc.indexOf('Z'))).toEqual({ path: 'a.3', key: false });
    expect(jsonPathAt(doc, doc.indexOf('"e"') + 1)).toEqual({ path: 'c.d', key: false });
  });

  it('says when the byte is inside a key', () => {
    const doc = bytes('{"metadata":{"ok":1,"bXd":2}}');

    expect(jsonPathAt(doc, doc.indexOf('X'))).toEqual({ path: 'metadata.bXd', key: true });
  });

  it('is the top level for a byte outside any value', () => {
    expect(jsonPathAt(bytes('{', [0xff], '}'), 1)).toEqual({ path: '', key: false });
  });
});

describe('invalidUtf8InJson', () => {
  it('names the field under the given prefix and describes the byte', () => {
    const doc = bytes('{"messages":[{"role":"user","content":"caf', [0xff, 0xfe], '"}]}');

    const bad = invalidUtf8InJson(doc, 'body');

    expect(bad).toEqual({ offset: doc.indexOf(0xff), byte: 0xff, field: 'body.messages.0.content', key: false });
    expect(describeInvalidUtf8(bad!)).toBe(
      `body.messages.0.content: not valid UTF-8 (byte 0xFF at offset ${doc.indexOf(0xff)})`,
    );
  });

  it('is null for valid UTF-8, U+FFFD itself included', () => {
    expect(invalidUtf8InJson(bytes('{"t":"\uFFFD é"}'), 'body')).toBeNull();
  });
});
