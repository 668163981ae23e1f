import type { MigrationDay } from '../db/queries/migration';

// The migration report's arithmetic, apart from its queries: how much of a model's traffic is answered locally,
// how often a local answer fell back, and, with the incumbent's prices, what it cost and what the local share saved.

export interface Prices {
  inputPerMTok: number;
  outputPerMTok: number;
}

export interface MigrationTotals {
  calls: number;
  answeredLocally: number;
  answeredByIncumbent: number;
  unanswered: number;
  /** Of the answered calls, the share answered locally (0 when none was answered). */
  localShare: number;
  fallbacks: number;
  tokens: { local: { prompt: number; completion: number }; incumbent: { prompt: number; completion: number } };
  /**
   * With prices: what the incumbent's answers cost, and what the local answers would have cost there (saved, before
   * the cost of running the local model, which tuneloop does not know). Null without prices.
   */
  cost: { incumbentUsd: number; savedUsd: number } | null;
}

const usd = (prompt: number, completion: number, p: Prices) =>
  Math.round(((prompt * p.inputPerMTok + completion * p.outputPerMTok) / 1e6) * 1e6) / 1e6;

export function migrationTotals(days: readonly MigrationDay[], prices: Prices | null): MigrationTotals {
  const sum = (f: (d: MigrationDay) => number) => days.reduce((a, d) => a + f(d), 0);
  const local = sum((d) => d.local);
  const incumbent = sum((d) => d.incumbent);
  const tokens = {
    local: { prompt: sum((d) => d.localPromptTokens), completion: sum((d) => d.localCompletionTokens) },
    incumbent: { prompt: sum((d) => d.incumbentPromptTokens), completion: sum((d) => d.incumbentCompletionTokens) },
  };
  return {
    calls: sum((d) => d.calls),
    answeredLocally: local,
    answeredByIncumbent: incumbent,
    unanswered: sum((d) => d.unanswered),
    localShare: local + incumbent > 0 ? Math.round((local / (local + incumbent)) * 10_000) / 10_000 : 0,
    fallbacks: sum((d) => d.fellBack),
    tokens,
    cost: prices
      ? {
          incumbentUsd: usd(tokens.incumbent.prompt, tokens.incumbent.completion, prices),
          savedUsd: usd(tokens.local.prompt, tokens.local.completion, prices),
        }
      : null,
  };
}

/** What `tuneloop status --model` prints of a migration report: a few lines an operator reads at a glance. */
export function describeMigration(r: {
  model: string;
  window: { days: number };
  serving: { production: string | null; canary: { version: string; percent: number | null } | null };
  incumbent: { model: string } | null;
  totals: MigrationTotals;
}): string {
  const t = r.totals;
  const lines = [
    `${r.model}: production ${r.serving.production ?? 'none'}` +
      (r.serving.canary ? `, canary ${r.serving.canary.version} at ${r.serving.canary.percent ?? 0} %` : '') +
      (r.incumbent ? ` (incumbent ${r.incumbent.model})` : ''),
    `last ${r.window.days} days: ${t.calls} calls, ${(t.localShare * 100).toFixed(1)} % answered locally, ` +
      `${t.answeredByIncumbent} by the incumbent, ${t.fallbacks} fallbacks, ${t.unanswered} unanswered`,
  ];
  if (t.cost) {
    lines.push(
      `incumbent cost $${t.cost.incumbentUsd.toFixed(4)}, saved by local answers $${t.cost.savedUsd.toFixed(4)}`,
    );
  }
  return lines.join('\n');
}
