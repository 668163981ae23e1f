import { describe, expect, it } from 'vitest';
import { createRedactor, normalizeValue, PII_ENGINE_VERSION } from '../../src/pii';

describe('createRedactor', () => {
  it('replaces each entity with a typed placeholder numbered by first appearance', () => {
    const r = createRedactor();

    const { text } = r.redact('Sarah Jones (sarah@example.com) and Tom Price, call 07700 900461.');

    expect(text).toBe('<PERSON_1> (<EMAIL_1>) and <PERSON_2>, call <PHONE_1>.');
  });

  it('keeps the same placeholder for the same value in every turn of the interaction', () => {
    const r = createRedactor();

    const turns = [
      'My daughter Grace emailed me from GRACE@Example.com.',
      'Grace said the number is +44 7700 900461.',
      "grace@example.com again, and 07700 900461; Grace's fine.",
    ].map((t) => r.redact(t).text);

    expect(turns).toEqual([
      'My daughter <PERSON_1> emailed me from <EMAIL_1>.',
      '<PERSON_1> said the number is <PHONE_1>.',
      "<EMAIL_1> again, and <PHONE_1>; <PERSON_1>'s fine.",
    ]);
  });

  it('gives a first name alone the placeholder of the full name it belongs to', () => {
    const r = createRedactor();

    const a = r.redact('I am Sarah Jones.').text;
    const b = r.redact('Sarah is tired today.').text;
    const c = r.redact('sarah jones again.').text;

    expect([a, b, c]).toEqual(['I am <PERSON_1>.', '<PERSON_1> is tired today.', '<PERSON_1> again.']);
  });

  it('does not share placeholders between redactors', () => {
    const first = createRedactor();
    first.redact('Tom Price and Emma Stone');

    const { text } = createRedactor().redact('Emma Stone');

    expect(text).toBe('<PERSON_1>');
  });

  it('uses placeholders that say nothing about the value', () => {
    const { text } = createRedactor().redact('card 4111 1111 1111 1111, ssn 123-45-6789');

    expect(text).toBe('card <CREDIT_CARD_1>, ssn <SSN_1>');
    expect(text).not.toMatch(/4111|6789|[0-9a-f]{8}/);
  });

  it('returns entities with offsets into the input, not the output, also after emoji', () => {
    const input = '🥳🥳 hi im lily 😊 my mum is on 07700 900461';

    const { text, entities } = createRedactor().redact(input);

    expect(text).toBe('🥳🥳 hi im <PERSON_1> 😊 my mum is on <PHONE_1>');
    expect(entities.map((e) => input.slice(e.start, e.end))).toEqual(['lily', '07700 900461']);
  });

  it('remembers names across turns even when a later turn has no cue', () => {
    const r = createRedactor();
    r.redact("I'm Oluwadamilare.");

    const { text } = r.redact('oluwadamilare again, sorry');

    expect(text).toBe('<PERSON_1> again, sorry');
  });
});

describe('normalizeValue', () => {
  it('folds case, accents and spacing in names, and digits in numbers', () => {
    expect(normalizeValue('PERSON', 'Zoë  Fontaine')).toBe(normalizeValue('PERSON', 'zoe fontaine'));
    expect(normalizeValue('PHONE', '+44 (0)7700 900461')).toBe(normalizeValue('PHONE', '07700-900-461'));
    expect(normalizeValue('PHONE', '+1 (415) 555-0132')).toBe(normalizeValue('PHONE', '415.555.0132'));
    expect(normalizeValue('CREDIT_CARD', '4111-1111-1111-1111')).toBe('4111111111111111');
    expect(normalizeValue('EMAIL', 'Sarah@Example.COM')).toBe('sarah@example.com');
    expect(normalizeValue('URL', 'https://www.instagram.com/sam/')).toBe('instagram.com/sam');
  });
});

describe('PII_ENGINE_VERSION', () => {
  it('is a non-empty version string datasets can record', () => {
    expect(PII_ENGINE_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
