import { describe, expect, it } from 'vitest';
import { versionName, versionTag } from '../../src/domain/versions';

describe('versionName', () => {
  it('tells apart runs started in the same minute (UUIDv7 run ids share their timestamp prefix)', () => {
    // Arrange: two Temporal run ids from moments apart
    const a = '01a2325b-3970-7139-bc72-84f0363954e1';
    const b = '01a2325b-c385-719b-9256-e34c1c3fb5bb';
    const day = new Date('2026-12-01T10:00:00Z');

    // Act
    const [va, vb] = [versionName(a, day), versionName(b, day)];

    // Assert
    expect(va).toBe('r20261201-84f0363954e1');
    expect(vb).toBe('r20261201-e34c1c3fb5bb');
    expect(va).not.toBe(vb);
  });

  it('makes a valid Ollama tag part', () => {
    expect(versionName('01A2325B-C385-719B-9256-E34C1C3FB5BB', new Date())).toMatch(/^r\d{8}-[0-9a-f]{12}$/);
  });
});

describe('versionTag', () => {
  it("names a version in Ollama by its model and its version name, never another's weights", () => {
    expect(versionTag('support-bot', 'r20261201-84f0363954e1')).toBe('support-bot:r20261201-84f0363954e1');
  });
});
