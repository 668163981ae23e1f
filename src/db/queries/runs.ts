import { sql } from 'kysely';
import type { Run } from '../database';
import type { Conn } from '../pool';

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

/** Minutes since the model's newest run started, by the database's clock (which set started_at); null: none. */
export async function minutesSinceLastRun(db: Conn, model: string): Promise<number | null> {
  const row = await db
    .selectFrom('runs')
    .select(sql<string | null>`extract(epoch from now() - max(started_at)) / 60`.as('minutes'))
    .where('model_id', '=', model)
    .executeTakeFirst();
  return row?.minutes == null ? null : Math.max(0, Number(row.minutes));
}

/** Records how a run ended (the first end time stays). */
export async function closeRun(
  db: Conn,
  run: { id: string; status: string; stages: unknown[]; result: unknown; error: string | null },
): Promise<void> {
  await db
    .updateTable('runs')
    .set({
      status: run.status,
      stage: null,
      stages: JSON.stringify(run.stages),
      result: JSON.stringify(run.result),
      error: run.error,
      ended_at: sql<Date>`coalesce(ended_at, now())`,
    })
    .where('id', '=', run.id)
    .execute();
}

/** Which of `ids` are runs still running. */
export async function runningRunIds(db: Conn, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db
    .selectFrom('runs')
    .select('id')
    .where('status', '=', 'running')
    .where('id', 'in', ids)
    .execute();
  return new Set(rows.map((r) => r.id));
}

/**
 * A model's run counts for its training status: runs in all, the newest run's start, and the newest version a run
 * trained (whatever became of it) and when.
 */
export async function runFacts(db: Conn, model: string) {
  const [runs, trained] = await Promise.all([
    db
      .selectFrom('runs')
      .select((eb) => [eb.fn.countAll<string>().as('total'), eb.fn.max('started_at').as('last')])
      .where('model_id', '=', model)
      .executeTakeFirstOrThrow(),
    db
      .selectFrom('model_versions')
      .select(['version', 'status', 'created_at', 'run_id'])
      .where('model_id', '=', model)
      .orderBy('created_at', 'desc')
      .limit(1)
      .executeTakeFirst(),
  ]);
  return { totalRuns: Number(runs.total), lastRunAt: runs.last as Date | null, lastTrained: trained ?? null };
}
