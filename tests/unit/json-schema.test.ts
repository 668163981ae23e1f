import { describe, expect, it } from 'vitest';
import { compileSchema, InvalidSchemaError, matchesSchema, MAX_PATTERN } from '../../src/llm/json-schema';

describe('answer schemas', () => {
  it('checks patterns and pattern properties as JSON Schema defines them (unanchored unless anchored)', () => {
    // Arrange
    const validate = compileSchema({
      type: 'object',
      properties: { code: { type: 'string', pattern: '^[A-Z]{3}-\\d+$' }, note: { type: 'string', pattern: 'ok' } },
      patternProperties: { '^x-': { type: 'number' } },
    });

    // Act + Assert
    expect(matchesSchema('{"code":"ABC-12","note":"all ok here","x-a":1}', validate)).toBe(true);
    expect(matchesSchema('{"code":"abc-12"}', validate)).toBe(false);
    expect(matchesSchema('{"note":"nope"}', validate)).toBe(false);
    expect(matchesSchema('{"x-a":"one"}', validate)).toBe(false);
    expect(matchesSchema('{"code": "ABC-1"', validate)).toBe(false); // not JSON
  });

  it('matches Unicode text by code point, as a "u" regular expression does', () => {
    // Arrange
    const validate = compileSchema({ type: 'string', pattern: '^\\p{L}{2}$' });

    // Act + Assert
    expect(matchesSchema('"é😀"', validate)).toBe(false);
    expect(matchesSchema('"éa"', validate)).toBe(true);
    expect(matchesSchema('"𝒜b"', validate)).toBe(true); // one astral letter is one character, not two halves
  });

  it('runs a pattern that backtracks catastrophically in JavaScript in linear time', () => {
    // Arrange: with JavaScript's engine, this answer against this pattern takes 2^40 steps (hours).
    const validate = compileSchema({ type: 'string', pattern: '^(a+)+$' });
    const answer = JSON.stringify(`${'a'.repeat(40)}!`);

    // Act
    const ok = matchesSchema(answer, validate);

    // Assert
    expect(ok).toBe(false);
    expect(matchesSchema(JSON.stringify('a'.repeat(40)), validate)).toBe(true);
  });

  // Each pattern against texts where JavaScript's and RE2's own definitions differ: the answer must be JavaScript's.
  it.each([
    ['^\\d+(\\s\\d{3})*\\s€$', ['10\u202f000 €', '10 000 €', '10\u00a0000\u3000€', '10_000 €']],
    ['^\\S+$', ['a\u00a0b', 'ab', 'a\ufeffb']],
    ['^[^\\s]+$', ['a\u2028b', 'ab']],
    ['^[a-z\\s]+$', ['a\u3000b', 'a\u000bb', 'a-b']],
    ['^[\\s\\S]*$', ['x\ny', '']],
    ['^a.b$', ['a\rb', 'a\u2028b', 'a😀b', 'a\nb', 'axb']],
    ['^\\p{Letter}+$', ['Ωé', 'a1']],
    ['^\\p{Script=Greek}+$', ['Ωλ', 'Ωa']],
    ['^\\p{sc=Latin}\\P{Lu}$', ['ab', 'aB']],
    ['^\\u00e9\\u{1F600}$', ['é😀', 'e😀']],
    ['^(?<year>\\d{4})-\\d{2}$', ['2024-01', '24-01']],
    ['^[^]$', ['\n', 'ab']],
    ['a[]b', ['ab', 'a b']],
    ['^\\.\\\\s$', ['.\\s', 'x\\s', '. ']],
  ])('reads %s as JavaScript does', (pattern, texts) => {
    // Arrange
    const validate = compileSchema({ type: 'string', pattern });

    // Act + Assert
    for (const text of texts) {
      expect([text, matchesSchema(JSON.stringify(text), validate)]).toEqual([
        text,
        new RegExp(pattern, 'u').test(text),
      ]);
    }
  });

  it('keeps answering after many distinct schemas (the compiled cache is renewed, not grown)', () => {
    // Arrange
    const first = compileSchema({ type: 'string', pattern: '^first$' });

    // Act
    for (let i = 0; i < 1_200; i++) compileSchema({ type: 'string', pattern: `^p${i}$`, maxLength: i });
    const again = compileSchema({ type: 'string', pattern: '^first$' });

    // Assert: both still validate, whichever instance compiled them
    expect(matchesSchema('"first"', first)).toBe(true);
    expect(matchesSchema('"first"', again)).toBe(true);
    expect(matchesSchema('"p1"', again)).toBe(false);
  });

  it.each([
    ['a look-ahead', '^(?=a)a$'],
    ['a back-reference', '(a)\\1'],
    ['an unbalanced group', '(a'],
    ['a repeat count over 1000', '^a{0,1001}$'],
    ['an unsupported Unicode property', '\\p{Script_Extensions=Greek}'],
    ['a pattern over the length limit', 'a'.repeat(MAX_PATTERN + 1)],
  ])('refuses a pattern with %s, naming the problem', (_what, pattern) => {
    // Act + Assert
    expect(() => compileSchema({ type: 'string', pattern })).toThrow(InvalidSchemaError);
    expect(() => compileSchema({ type: 'string', pattern })).toThrow(/not a valid JSON schema: .+/);
  });

  it('refuses a schema that is not one', () => {
    expect(() => compileSchema({ type: 'nonsense' })).toThrow(/not a valid JSON schema/);
  });
});
