import { sql } from 'kysely';
import type { Conn } from '../pool';

// The train stage's curves (train_log): what the trainer reported, step by step.

export interface TrainLogPoint {
  kind: 'train' | 'validation';
  step: number;
  loss: number | null;
  lr: number | null;
  tokensPerS: number | null;
}

/** Upserts points: a step redone after a resume replaces the interrupted attempt's. */
export async function recordTrainLog(db: Conn, runId: string, points: readonly TrainLogPoint[]): Promise<void> {
  if (points.length === 0) return;
  // The newest report of a step wins, also within one batch (ON CONFLICT cannot touch a row twice).
  const last = new Map(points.map((p) => [`${p.kind}:${p.step}`, p]));
  await db
    .insertInto('train_log')
    .values(
      [...last.values()].map((p) => ({
        run_id: runId,
        kind: p.kind,
        step: p.step,
        loss: p.loss,
        lr: p.lr,
        tokens_per_s: p.tokensPerS,
      })),
    )
    .onConflict((oc) =>
      oc.columns(['run_id', 'kind', 'step']).doUpdateSet({
        loss: (eb) => eb.ref('excluded.loss'),
        lr: (eb) => eb.ref('excluded.lr'),
        tokens_per_s: (eb) => eb.ref('excluded.tokens_per_s'),
        at: sql`now()`,
      }),
    )
    .execute();
}

export interface TrainLog {
  train: { step: number; loss: number | null; lr: number | null; tokensPerS: number | null }[];
  validation: { step: number; loss: number | null }[];
}

export async function trainLog(db: Conn, runId: string): Promise<TrainLog> {
  const rows = await db
    .selectFrom('train_log')
    .select(['kind', 'step', 'loss', 'lr', 'tokens_per_s'])
    .where('run_id', '=', runId)
    .orderBy('kind')
    .orderBy('step')
    .execute();
  return {
    train: rows
      .filter((r) => r.kind === 'train')
      .map((r) => ({ step: r.step, loss: r.loss, lr: r.lr, tokensPerS: r.tokens_per_s })),
    validation: rows.filter((r) => r.kind === 'validation').map((r) => ({ step: r.step, loss: r.loss })),
  };
}
