import { sql } from 'kysely';
import { migrationTotals } from '../../domain/migration';
import { parsePipelineConfig } from '../../domain/model-config';
import type { Model } from '../database';
import type { Conn } from '../pool';
import { servingAliases } from './registry';
import { listRuns } from './runs';

/** One day of a model's served calls, by who answered: the rows the migration report is made of. */
export interface MigrationDay {
  day: string;
  calls: number;
  local: number;
  incumbent: number;
  unanswered: number;
  /** Calls a local version was asked first and the incumbent (or production) answered instead. */
  fellBack: number;
  localP50: number | null;
  localP95: number | null;
  incumbentP50: number | null;
  incumbentP95: number | null;
  localPromptTokens: number;
  localCompletionTokens: number;
  incumbentPromptTokens: number;
  incumbentCompletionTokens: number;
}

type Side = 'local' | 'incumbent';
const latencyQuantile = (q: number, side: Side) =>
  sql<
    number | null
  >`percentile_cont(${sql.lit(q)}) within group (order by latency_ms) filter (where answered_by = ${sql.lit(side)})`;
const tokens = (column: 'prompt_tokens' | 'completion_tokens', side: Side) =>
  sql<number>`coalesce(sum(${sql.ref(column)}) filter (where answered_by = ${sql.lit(side)}), 0)::bigint`;

/** Served calls of `model` since `since`, per UTC day, oldest first. */
export async function migrationDays(db: Conn, model: string, since: Date): Promise<MigrationDay[]> {
  const rows = await db
    .selectFrom('serving_calls')
    .select([
      sql<string>`to_char(date_trunc('day', at at time zone 'UTC'), 'YYYY-MM-DD')`.as('day'),
      sql<number>`count(*)::int`.as('calls'),
      sql<number>`(count(*) filter (where answered_by = 'local'))::int`.as('local'),
      sql<number>`(count(*) filter (where answered_by = 'incumbent'))::int`.as('incumbent'),
      sql<number>`(count(*) filter (where answered_by is null))::int`.as('unanswered'),
      sql<number>`(count(*) filter (where fell_back))::int`.as('fell_back'),
      latencyQuantile(0.5, 'local').as('local_p50'),
      latencyQuantile(0.95, 'local').as('local_p95'),
      latencyQuantile(0.5, 'incumbent').as('incumbent_p50'),
      latencyQuantile(0.95, 'incumbent').as('incumbent_p95'),
      tokens('prompt_tokens', 'local').as('lp'),
      tokens('completion_tokens', 'local').as('lc'),
      tokens('prompt_tokens', 'incumbent').as('ip'),
      tokens('completion_tokens', 'incumbent').as('ic'),
    ])
    .where('model_id', '=', model)
    .where('at', '>=', since)
    .groupBy(sql`1`)
    .orderBy(sql`1`)
    .execute();
  const n = (v: unknown) => (v === null ? null : Math.round(Number(v) * 100) / 100);
  return rows.map((r) => ({
    day: r.day,
    calls: r.calls,
    local: r.local,
    incumbent: r.incumbent,
    unanswered: r.unanswered,
    fellBack: r.fell_back,
    localP50: n(r.local_p50),
    localP95: n(r.local_p95),
    incumbentP50: n(r.incumbent_p50),
    incumbentP95: n(r.incumbent_p95),
    localPromptTokens: Number(r.lp),
    localCompletionTokens: Number(r.lc),
    incumbentPromptTokens: Number(r.ip),
    incumbentCompletionTokens: Number(r.ic),
  }));
}

/**
 * The migration off the hosted incumbent over the last `days` days (GET /v1/models/:model/migration, `tuneloop
 * status --model`): who serves now, the share answered locally vs by the incumbent per day, fallbacks, each side's
 * latency and tokens, with prices what the incumbent cost and what the local share saved, and recent canary verdicts.
 */
export async function migrationReport(db: Conn, model: Pick<Model, 'id' | 'config'>, days: number) {
  const config = parsePipelineConfig(model.config);
  const since = new Date(Date.now() - days * 86_400_000);
  const [daily, aliases, runs] = await Promise.all([
    migrationDays(db, model.id, since),
    servingAliases(db, model.id),
    listRuns(db, { model: model.id, limit: 10 }),
  ]);
  return {
    model: model.id,
    window: { days, since },
    serving: {
      production: aliases.production?.version ?? (config.incumbent ? 'incumbent' : null),
      canary: aliases.canary ? { version: aliases.canary.version, percent: aliases.canary.percent } : null,
    },
    incumbent: config.incumbent ? { model: config.incumbent.model, prices: config.incumbent.prices ?? null } : null,
    totals: migrationTotals(daily, config.incumbent?.prices ?? null),
    daily,
    verdicts: runs.flatMap((r) => {
      const canary = (r.stages as { name?: string; status?: string; summary?: unknown }[]).find(
        (s) => s?.name === 'canary' && s.status !== 'pending' && s.status !== 'skipped',
      );
      return canary ? [{ runId: r.id, at: r.started_at, status: canary.status, canary: canary.summary ?? null }] : [];
    }),
  };
}
