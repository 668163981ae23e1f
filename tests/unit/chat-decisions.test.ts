import { describe, expect, it } from 'vitest';
import {
  answerFormat,
  answeredAs,
  ERASURE_MARGIN_MS,
  fallbackFor,
  routeSubject,
  servedBeforeErasure,
} from '../../src/domain/chat';
import { bucketOf } from '../../src/domain/routing';

const SCHEMA = { type: 'object', properties: { answer: { type: 'string' } } };
const OTHER = { type: 'array' };

describe('answerFormat', () => {
  it("applies the model's output schema when the request names none; its schema is the model's", () => {
    expect(answerFormat(undefined, SCHEMA)).toEqual({ format: SCHEMA, schema: SCHEMA, owner: 'model', checked: true });
  });

  it('asks for free text and checks nothing when neither names a format', () => {
    expect(answerFormat(undefined, null)).toEqual({ format: undefined, schema: null, owner: 'model', checked: false });
  });

  it("prefers the request's schema to the model's", () => {
    expect(answerFormat(OTHER, SCHEMA)).toEqual({ format: OTHER, schema: OTHER, owner: 'request', checked: true });
  });

  it('checks `json` for being JSON only, even where the model has a schema', () => {
    expect(answerFormat('json', SCHEMA)).toEqual({ format: 'json', schema: null, owner: 'request', checked: true });
  });
});

/** A version as the serving cache holds it: only the canary's share matters here. */
interface Version {
  name: string;
  percent: number | null;
}

describe('routeSubject', () => {
  const production: Version = { name: 'production', percent: null };
  const canary = (percent: number): Version => ({ name: 'canary', percent });
  // Subjects on either side of a 50 % share.
  const subjects = Array.from({ length: 200 }, (_, i) => `user-${i}`);
  const below = subjects.find((s) => bucketOf('bot', s) < 50)!;
  const above = subjects.find((s) => bucketOf('bot', s) >= 50)!;

  it('sends everyone to production when there is no canary', () => {
    expect(routeSubject('bot', below, { production })).toEqual({ first: production, alias: 'production', production });
  });

  it("sends the subjects of the canary's share to the canary and the rest to production", () => {
    // Arrange
    const aliases = { production, canary: canary(50) };

    // Act
    const [inShare, outside] = [routeSubject('bot', below, aliases), routeSubject('bot', above, aliases)];

    // Assert
    expect(inShare).toEqual({ first: aliases.canary, alias: 'canary', production });
    expect(outside).toEqual({ first: production, alias: 'production', production });
  });

  it('sends nobody to a canary at 0 %', () => {
    expect(routeSubject('bot', below, { production, canary: canary(0) })?.alias).toBe('production');
  });

  it('is null when nothing is in production, canary or not', () => {
    expect(routeSubject('bot', below, {})).toBeNull();
    expect(routeSubject('bot', below, { canary: canary(100) })).toBeNull();
  });
});

describe('falling back', () => {
  const production: Version = { name: 'production', percent: null };
  const canary: Version = { name: 'canary', percent: 100 };

  it('hands a failed canary to production, which answers as production', () => {
    // Arrange
    const routed = routeSubject('bot', 'anyone', { production, canary })!;

    // Act
    const second = fallbackFor(routed);

    // Assert
    expect(second).toBe(production);
    expect(answeredAs(routed, canary)).toBe('canary');
    expect(answeredAs(routed, production)).toBe('production');
  });

  it('has nobody to hand a failed production to', () => {
    expect(fallbackFor(routeSubject('bot', 'anyone', { production })!)).toBeNull();
  });
});

describe('servedBeforeErasure', () => {
  const erasedAt = Date.parse('2026-12-01T10:00:00Z');

  it('takes a conversation served before the erasure, or within the clocks margin after it, for an erased one', () => {
    expect(servedBeforeErasure(erasedAt - 1, erasedAt)).toBe(true);
    expect(servedBeforeErasure(erasedAt + ERASURE_MARGIN_MS, erasedAt)).toBe(true);
  });

  it("records a returning subject's conversation served after the margin", () => {
    expect(servedBeforeErasure(erasedAt + ERASURE_MARGIN_MS + 1, erasedAt)).toBe(false);
  });
});
