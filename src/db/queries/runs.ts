import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database, Run } from '../database';

type Conn = Kysely<Database> | Transaction<Database>;

export interface NewRun {
  id: string;
  workflowId: string;
  modelId: string;
  trigger: string;
  requestedBy: string | null;
  requestId: string | null;
}

/**
 * Inserts the run once; later calls (retries, the API racing the workflow) keep what is there. The request id
 * is known only from the workflow's own input, so the workflow fills it in; the API inserts without it.
 */
export async function ensureRun(db: Conn, run: NewRun): Promise<void> {
  await db
    .insertInto('runs')
    .values({
      id: run.id,
      workflow_id: run.workflowId,
      model_id: run.modelId,
      status: 'running',
      trigger: run.trigger,
      requested_by: run.requestedBy,
      request_id: run.requestId,
    })
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        request_id: sql<string | null>`coalesce(runs.request_id, excluded.request_id)`,
        requested_by: sql<
          string | null
        >`case when runs.request_id is null then excluded.requested_by else runs.requested_by end`,
      }),
    )
    .execute();
}

export async function getRun(db: Conn, id: string): Promise<Run | undefined> {
  return db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function listRuns(
  db: Conn,
  opts: { models?: readonly string[]; model?: string; status?: string; limit: number; before?: Date },
): Promise<Run[]> {
  let q = db.selectFrom('runs').selectAll().orderBy('started_at', 'desc').orderBy('id').limit(opts.limit);
  if (opts.models) {
    if (opts.models.length === 0) return [];
    q = q.where('model_id', 'in', opts.models);
  }
  if (opts.model) q = q.where('model_id', '=', opts.model);
  if (opts.status) q = q.where('status', '=', opts.status);
  if (opts.before) q = q.where('started_at', '<', opts.before);
  return q.execute();
}
