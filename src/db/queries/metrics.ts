import { sql } from 'kysely';
import type { Conn } from '../pool';

// What the API's Prometheus metrics read from the database at each scrape (api/metrics.ts).

/** Runs by model and status. */
export async function runCounts(db: Conn): Promise<{ model: string; status: string; n: number }[]> {
  const rows = await db
    .selectFrom('runs')
    .select(['model_id', 'status', (eb) => eb.fn.countAll<string>().as('n')])
    .groupBy(['model_id', 'status'])
    .execute();
  return rows.map((r) => ({ model: r.model_id, status: r.status, n: Number(r.n) }));
}

/** Each stage's duration in every model's newest run that ended. */
export async function lastRunStageSeconds(db: Conn): Promise<{ model: string; stage: string; seconds: number }[]> {
  const rows = await sql<{ model_id: string; name: string; seconds: string }>`
    select r.model_id, s->>'name' as name,
           extract(epoch from ((s->>'endedAt')::timestamptz - (s->>'startedAt')::timestamptz)) as seconds
    from (select distinct on (model_id) model_id, stages from runs where status <> 'running'
          order by model_id, started_at desc) r,
         jsonb_array_elements(r.stages) s
    where s->>'startedAt' is not null and s->>'endedAt' is not null`.execute(db);
  return rows.rows.map((r) => ({ model: r.model_id, stage: r.name, seconds: Number(r.seconds) }));
}

/** Tokens per second of every model's newest trained version (tokens trained over the trainer's seconds). */
export async function newestTrainingSpeed(db: Conn): Promise<{ model: string; tokensPerS: number }[]> {
  const rows = await sql<{ model_id: string; tps: string | null }>`
    select distinct on (model_id) model_id,
           (metrics->>'tokens')::float8 / nullif((metrics->>'seconds')::float8, 0) as tps
    from model_versions where metrics->>'tokens' is not null and metrics->>'seconds' is not null
    order by model_id, created_at desc`.execute(db);
  return rows.rows.flatMap((r) => (r.tps === null ? [] : [{ model: r.model_id, tokensPerS: Number(r.tps) }]));
}

/** The canary's share of subjects, per model that has a canary. */
export async function canaryShares(db: Conn): Promise<{ model: string; percent: number }[]> {
  const rows = await db.selectFrom('aliases').select(['model_id', 'percent']).where('name', '=', 'canary').execute();
  return rows.map((r) => ({ model: r.model_id, percent: Number(r.percent ?? 0) }));
}
