import { describe, expect, it } from 'vitest';
import { answerFormat, answeredAs, ERASURE_MARGIN_MS, routeSubject, servedBeforeErasure } from '../../src/domain/chat';
import { Breaker } from '../../src/domain/breaker';
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
    expect(routeSubject('bot', below, { production })).toEqual({
      first: production,
      alias: 'production',
      production,
      fallbacks: [],
    });
  });

  it("sends the subjects of the canary's share to the canary and the rest to production", () => {
    // Arrange
    const aliases = { production, canary: canary(50) };

    // Act
    const [inShare, outside] = [routeSubject('bot', below, aliases), routeSubject('bot', above, aliases)];

    // Assert
    expect(inShare).toEqual({ first: aliases.canary, alias: 'canary', production, fallbacks: [production] });
    expect(outside).toEqual({ first: production, alias: 'production', production, fallbacks: [] });
  });

  it('sends nobody to a canary at 0 %', () => {
    expect(routeSubject('bot', below, { production, canary: canary(0) })?.alias).toBe('production');
  });

  it('sends a call without a subject to production, whatever the canary share', () => {
    expect(routeSubject('bot', null, { production, canary: canary(100) })?.alias).toBe('production');
  });

  it('is null when nothing is in production, canary or not, and there is no incumbent', () => {
    expect(routeSubject('bot', below, {})).toBeNull();
    expect(routeSubject('bot', below, { canary: canary(100) })).toBeNull();
  });
});

describe('routeSubject with an incumbent', () => {
  const incumbent: Version = { name: 'incumbent', percent: null };
  const production: Version = { name: 'production', percent: null };
  const canary: Version = { name: 'canary', percent: 100 };

  it('makes the incumbent production until a local version is', () => {
    expect(routeSubject('bot', 'u', {}, incumbent)).toEqual({
      first: incumbent,
      alias: 'production',
      production: incumbent,
      fallbacks: [],
    });
  });

  it("canaries the first local version against the incumbent, which answers the canary's failures", () => {
    expect(routeSubject('bot', 'u', { canary }, incumbent)).toEqual({
      first: canary,
      alias: 'canary',
      production: incumbent,
      fallbacks: [incumbent],
    });
  });

  it('falls back from the canary to production, then to the incumbent', () => {
    expect(routeSubject('bot', 'u', { production, canary }, incumbent)?.fallbacks).toEqual([production, incumbent]);
    expect(routeSubject('bot', null, { production, canary }, incumbent)?.fallbacks).toEqual([incumbent]);
  });

  it('sends everything to the incumbent while the breaker keeps local versions out', () => {
    const routed = routeSubject('bot', 'u', { production, canary }, incumbent, () => false)!;
    expect(routed).toEqual({ first: incumbent, alias: 'production', production, fallbacks: [] });
  });

  it('keeps local versions in when there is no incumbent to send traffic to, breaker or not', () => {
    expect(routeSubject('bot', 'u', { production }, null, () => false)?.first).toBe(production);
  });
});

describe('Breaker', () => {
  it('opens after the configured consecutive failures, lets one probe through after the cool-down, and closes on its success', () => {
    const b = new Breaker(3, 1_000);
    b.failed(0);
    b.failed(1);
    b.succeeded(); // a success in between starts the count again
    b.failed(2);
    b.failed(3);
    expect(b.allowLocal(4)).toBe(true);
    b.failed(4);
    expect(b.state(5)).toBe('open');
    expect(b.allowLocal(500)).toBe(false);
    expect(b.allowLocal(1_004)).toBe(true); // the probe
    expect(b.allowLocal(1_005)).toBe(false); // only one at a time
    b.succeeded();
    expect(b.state(1_006)).toBe('closed');
    expect(b.allowLocal(1_006)).toBe(true);
  });

  it('opens for another cool-down when the probe fails', () => {
    const b = new Breaker(1, 1_000);
    b.failed(0);
    expect(b.allowLocal(1_000)).toBe(true);
    b.failed(1_001);
    expect(b.allowLocal(1_500)).toBe(false);
    expect(b.allowLocal(2_001)).toBe(true);
  });
});

describe('falling back', () => {
  const production: Version = { name: 'production', percent: null };
  const canary: Version = { name: 'canary', percent: 100 };

  it('hands a failed canary to production, which answers as production', () => {
    // Arrange
    const routed = routeSubject('bot', 'anyone', { production, canary })!;

    // Act
    const [second] = routed.fallbacks;

    // Assert
    expect(second).toBe(production);
    expect(answeredAs(routed, canary)).toBe('canary');
    expect(answeredAs(routed, production)).toBe('production');
  });

  it('has nobody to hand a failed production to', () => {
    expect(routeSubject('bot', 'anyone', { production })!.fallbacks).toEqual([]);
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
