import { describe, expect, it } from 'vitest';
import type { MigrationDay } from '../../src/db/queries/migration';
import { describeMigration, migrationTotals } from '../../src/domain/migration';

const day = (over: Partial<MigrationDay>): MigrationDay => ({
  day: '2026-12-01',
  calls: 0,
  local: 0,
  incumbent: 0,
  unanswered: 0,
  fellBack: 0,
  localP50: null,
  localP95: null,
  incumbentP50: null,
  incumbentP95: null,
  localPromptTokens: 0,
  localCompletionTokens: 0,
  incumbentPromptTokens: 0,
  incumbentCompletionTokens: 0,
  ...over,
});

describe('migrationTotals', () => {
  const days = [
    day({ calls: 10, incumbent: 10, incumbentPromptTokens: 1_000_000, incumbentCompletionTokens: 200_000 }),
    day({
      day: '2026-12-02',
      calls: 11,
      local: 8,
      incumbent: 2,
      unanswered: 1,
      fellBack: 2,
      localPromptTokens: 2_000_000,
      localCompletionTokens: 500_000,
      incumbentPromptTokens: 100_000,
    }),
  ];

  it('adds the days up, with the local share of the answered calls', () => {
    const t = migrationTotals(days, null);
    expect(t).toMatchObject({
      calls: 21,
      answeredLocally: 8,
      answeredByIncumbent: 12,
      unanswered: 1,
      localShare: 0.4,
      fallbacks: 2,
      cost: null,
    });
  });

  it("prices the incumbent's tokens and the local ones at the incumbent's prices", () => {
    const t = migrationTotals(days, { inputPerMTok: 0.5, outputPerMTok: 1.5 });
    // incumbent: 1.1 M in, 0.2 M out → 0.55 + 0.3; local: 2 M in, 0.5 M out → 1 + 0.75
    expect(t.cost).toEqual({ incumbentUsd: 0.85, savedUsd: 1.75 });
  });

  it('has a local share of 0, not NaN, when nothing was answered', () => {
    expect(migrationTotals([], null).localShare).toBe(0);
  });
});

describe('describeMigration', () => {
  it('says who serves, the local share and the money, in a few lines', () => {
    const text = describeMigration({
      model: 'coach',
      window: { days: 30 },
      serving: { production: 'incumbent', canary: { version: 'r1', percent: 25 } },
      incumbent: { model: 'llama-3.3-70b-versatile' },
      totals: migrationTotals([day({ calls: 4, local: 1, incumbent: 3 })], { inputPerMTok: 1, outputPerMTok: 1 }),
    });
    expect(text).toBe(
      [
        'coach: production incumbent, canary r1 at 25 % (incumbent llama-3.3-70b-versatile)',
        'last 30 days: 4 calls, 25.0 % answered locally, 3 by the incumbent, 0 fallbacks, 0 unanswered',
        'incumbent cost $0.0000, saved by local answers $0.0000',
      ].join('\n'),
    );
  });
});
