import { describe, expect, it } from 'vitest';
import { compileSchema, InvalidSchemaError, matchesSchema } from '../../src/llm/json-schema';

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

  it.each([
    ['a look-ahead', '^(?=a)a$'],
    ['a back-reference', '(a)\\1'],
    ['an unbalanced group', '(a'],
  ])('refuses a pattern with %s, naming the problem', (_what, pattern) => {
    // Act + Assert
    expect(() => compileSchema({ type: 'string', pattern })).toThrow(InvalidSchemaError);
    expect(() => compileSchema({ type: 'string', pattern })).toThrow(/not a valid JSON schema: .+/);
  });

  it('refuses a schema that is not one', () => {
    expect(() => compileSchema({ type: 'nonsense' })).toThrow(/not a valid JSON schema/);
  });
});
