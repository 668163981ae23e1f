import { sql } from 'kysely';
import type { Conn } from '../pool';

export interface CachedScore {
  score: number;
  reason: string;
}

/** Cached scores of rows by their sha256, for one judge and rubric. */
export async function cachedScores(
  db: Conn,
  judge: string,
  rubricSha256: string,
  rowShas: readonly string[],
): Promise<Map<string, CachedScore>> {
  if (!rowShas.length) return new Map();
  const rows = await db
    .selectFrom('row_scores')
    .select(['row_sha256', 'score', 'reason'])
    .where('judge', '=', judge)
    .where('rubric_sha256', '=', rubricSha256)
    .where('row_sha256', 'in', [...new Set(rowShas)])
    .execute();
  return new Map(rows.map((r) => [r.row_sha256, { score: r.score, reason: r.reason }]));
}

/**
 * Keeps judged scores. A score is written only while its interaction exists (an erasure since the row was read
 * leaves nothing behind), and a row judged twice keeps its first score.
 */
export async function saveScores(
  db: Conn,
  judge: string,
  rubricSha256: string,
  scores: readonly { rowSha256: string; interactionId: string; score: number; reason: string }[],
): Promise<void> {
  if (!scores.length) return;
  const values = scores.map(
    (s) =>
      sql`(${judge}::text, ${rubricSha256}::text, ${s.rowSha256}::text, ${s.interactionId}::uuid,
        ${s.score}::double precision, ${s.reason}::text)`,
  );
  await sql`
    insert into row_scores (judge, rubric_sha256, row_sha256, interaction_id, score, reason)
    select v.judge, v.rubric, v.row_sha, v.interaction_id, v.score, v.reason
    from (values ${sql.join(values)}) as v(judge, rubric, row_sha, interaction_id, score, reason)
    where exists (select 1 from interactions i where i.id = v.interaction_id)
    on conflict do nothing`.execute(db);
}

/** Stores a dataset's quality report. */
export async function saveQualityReport(db: Conn, datasetId: string, report: unknown): Promise<void> {
  await db
    .updateTable('datasets')
    .set({ quality: JSON.stringify(report) })
    .where('id', '=', datasetId)
    .execute();
}
