import { sql } from 'kysely';
import type { AliasStats } from '../../domain/canary';
import type { Conn } from '../pool';

export interface ServingCall {
  model: string;
  versionId: string | null;
  alias: 'production' | 'canary';
  ok: boolean;
  fellBack: boolean;
  error: string | null;
  latencyMs: number;
  schemaValid: boolean | null;
  interactionId: string | null;
  /** Unique per call: recording a call twice keeps one row. */
  callId: string;
  /** Who answered (null: nobody); tokens as the answerer counted them. */
  answeredBy?: 'local' | 'incumbent' | null;
  promptTokens?: number | null;
  completionTokens?: number | null;
}

export async function insertServingCalls(db: Conn, calls: readonly ServingCall[]): Promise<void> {
  if (calls.length === 0) return;
  await db
    .insertInto('serving_calls')
    .values(
      calls.map((c) => ({
        model_id: c.model,
        version_id: c.versionId,
        alias: c.alias,
        ok: c.ok,
        fell_back: c.fellBack,
        error: c.error,
        latency_ms: c.latencyMs,
        schema_valid: c.schemaValid,
        interaction_id: c.interactionId,
        call_id: c.callId,
        answered_by: c.answeredBy ?? null,
        prompt_tokens: c.promptTokens ?? null,
        completion_tokens: c.completionTokens ?? null,
      })),
    )
    .onConflict((oc) => oc.column('call_id').doNothing())
    .execute();
}

/**
 * What `alias` served with `versionId` since `since`: calls, errors (the version did not answer), p95 latency of
 * its answers, feedback on its answers (thumbs-down or a rating of 2 or less counts as down), schema validity.
 */
export async function aliasStats(
  db: Conn,
  model: string,
  alias: 'production' | 'canary',
  /** null: the incumbent (production before a local version was promoted). */
  versionId: string | null,
  since: Date,
): Promise<AliasStats> {
  const calls = await db
    .selectFrom('serving_calls')
    .select([
      sql<number>`count(*)::int`.as('calls'),
      sql<number>`(count(*) filter (where not ok))::int`.as('errors'),
      sql<number | null>`percentile_cont(0.95) within group (order by latency_ms) filter (where ok)`.as('p95'),
      sql<number>`(count(*) filter (where schema_valid is not null))::int`.as('schema_checked'),
      sql<number>`(count(*) filter (where schema_valid))::int`.as('schema_valid'),
    ])
    .where('model_id', '=', model)
    .where('alias', '=', alias)
    .where('version_id', versionId === null ? 'is' : '=', versionId)
    .where('at', '>=', since)
    .executeTakeFirstOrThrow();
  const feedback = await db
    .selectFrom('serving_calls as c')
    .innerJoin('interactions as i', 'i.id', 'c.interaction_id')
    .innerJoin('feedback as f', 'f.interaction_id', 'i.id')
    .select([
      sql<number>`count(*)::int`.as('feedback'),
      sql<number>`(count(*) filter (where f.thumbs = 'down' or f.rating <= 2))::int`.as('down'),
    ])
    .where('c.model_id', '=', model)
    .where('c.at', '>=', since)
    .where('c.alias', '=', alias)
    .where('i.model_version_id', versionId === null ? 'is' : '=', versionId)
    .executeTakeFirstOrThrow();
  return {
    calls: calls.calls,
    errors: calls.errors,
    p95LatencyMs: calls.p95 === null ? null : Number(calls.p95),
    feedback: feedback.feedback,
    thumbsDown: feedback.down,
    schemaChecked: calls.schema_checked,
    schemaValid: calls.schema_valid,
  };
}
