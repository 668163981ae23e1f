import { sql } from 'kysely';
import type { ChatMessage } from '../../domain/conversation';
import type { Conn } from '../pool';

export interface ShadowPair {
  model: string;
  versionId: string;
  interactionId: string;
  status: 'answered' | 'failed';
  messages: ChatMessage[];
  productionAnswer: string;
  candidateAnswer: string | null;
  productionLatencyMs: number;
  candidateLatencyMs: number | null;
  error: string | null;
}

/**
 * Writes a pair if its interaction is there (the pair hangs off it: an erasure deletes both); false when it is not
 * (never recorded, or erased meanwhile), and then nothing is written.
 */
export async function insertShadowPair(db: Conn, p: ShadowPair): Promise<boolean> {
  const r = await db
    .insertInto('shadow_pairs')
    .columns([
      'model_id',
      'version_id',
      'interaction_id',
      'status',
      'messages',
      'production_answer',
      'candidate_answer',
      'production_latency_ms',
      'candidate_latency_ms',
      'error',
    ])
    .expression((eb) =>
      eb
        .selectFrom('interactions')
        .select([
          sql.lit(p.model).as('model_id'),
          sql`${p.versionId}::uuid`.as('version_id'),
          'id',
          sql.lit(p.status).as('status'),
          sql`${JSON.stringify(p.messages)}::jsonb`.as('messages'),
          sql`${p.productionAnswer}::text`.as('production_answer'),
          sql`${p.candidateAnswer}::text`.as('candidate_answer'),
          sql`${p.productionLatencyMs}::double precision`.as('production_latency_ms'),
          sql`${p.candidateLatencyMs}::double precision`.as('candidate_latency_ms'),
          sql`${p.error}::text`.as('error'),
        ])
        .where('id', '=', p.interactionId),
    )
    .executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

/** A call that was not shadowed because the queue was full: counted, with no text. */
export async function insertDroppedShadow(db: Conn, model: string, versionId: string): Promise<void> {
  await db.insertInto('shadow_pairs').values({ model_id: model, version_id: versionId, status: 'dropped' }).execute();
}

export interface ShadowStats {
  answered: number;
  failed: number;
  dropped: number;
  candidateP95Ms: number | null;
  productionP95Ms: number | null;
  wins: number;
  losses: number;
  ties: number;
}

/** The shadow's evidence for `versionId` since `since`. */
export async function shadowStats(db: Conn, versionId: string, since: Date): Promise<ShadowStats> {
  const r = await db
    .selectFrom('shadow_pairs')
    .select([
      sql<number>`(count(*) filter (where status = 'answered'))::int`.as('answered'),
      sql<number>`(count(*) filter (where status = 'failed'))::int`.as('failed'),
      sql<number>`(count(*) filter (where status = 'dropped'))::int`.as('dropped'),
      sql<
        number | null
      >`percentile_cont(0.95) within group (order by candidate_latency_ms) filter (where status = 'answered')`.as(
        'cp95',
      ),
      sql<
        number | null
      >`percentile_cont(0.95) within group (order by production_latency_ms) filter (where status = 'answered')`.as(
        'pp95',
      ),
      sql<number>`(count(*) filter (where outcome = 'win'))::int`.as('wins'),
      sql<number>`(count(*) filter (where outcome = 'loss'))::int`.as('losses'),
      sql<number>`(count(*) filter (where outcome = 'tie'))::int`.as('ties'),
    ])
    .where('version_id', '=', versionId)
    .where('at', '>=', since)
    .executeTakeFirstOrThrow();
  return {
    answered: r.answered,
    failed: r.failed,
    dropped: r.dropped,
    candidateP95Ms: r.cp95 === null ? null : Number(r.cp95),
    productionP95Ms: r.pp95 === null ? null : Number(r.pp95),
    wins: r.wins,
    losses: r.losses,
    ties: r.ties,
  };
}

/** Answered pairs not judged yet, oldest first. */
export async function unjudgedPairs(db: Conn, versionId: string, since: Date, limit: number) {
  return db
    .selectFrom('shadow_pairs')
    .select(['id', 'messages', 'production_answer', 'candidate_answer'])
    .where('version_id', '=', versionId)
    .where('at', '>=', since)
    .where('status', '=', 'answered')
    .where('outcome', 'is', null)
    .orderBy('at')
    .limit(limit)
    .execute();
}

export async function setPairOutcome(db: Conn, id: string, outcome: 'win' | 'loss' | 'tie'): Promise<void> {
  await db.updateTable('shadow_pairs').set({ outcome }).where('id', '=', id).execute();
}
