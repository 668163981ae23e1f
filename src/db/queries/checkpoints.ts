import type { Conn } from '../pool';

/** Records a checkpoint uploaded to the store (again: a re-upload replaces the record and revives it). */
export async function recordCheckpoint(
  db: Conn,
  c: { runId: string; step: number; key: string; manifestSha256: string; bytes: number },
): Promise<void> {
  await db
    .insertInto('checkpoints')
    .values({ run_id: c.runId, step: c.step, key: c.key, manifest_sha256: c.manifestSha256, bytes: c.bytes })
    .onConflict((oc) =>
      oc
        .columns(['run_id', 'step'])
        .doUpdateSet({ key: c.key, manifest_sha256: c.manifestSha256, bytes: c.bytes, deleted_at: null }),
    )
    .execute();
}

/** Records the run's checkpoints at `steps` deleted from the store. */
export async function markCheckpointsDeleted(db: Conn, runId: string, steps: readonly number[]): Promise<void> {
  if (steps.length === 0) return;
  await db
    .updateTable('checkpoints')
    .set({ deleted_at: new Date() })
    .where('run_id', '=', runId)
    .where('step', 'in', steps)
    .where('deleted_at', 'is', null)
    .execute();
}
