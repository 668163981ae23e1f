import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { DatasetManifest } from '../../dataset/manifest';
import type { ErasureDataset } from '../database';
import { withPgTransaction, type Conn, type Db, type Trx } from '../pool';
import { audit } from './audit';

export interface ErasureRecord {
  id: string;
  status: 'pending' | 'done';
  interactions: number;
  feedback: number;
  datasets: ErasureDataset[];
  modelVersions: { id: string; version: string; model: string }[];
}

/** How an erasure names its subject: a hash, so the record does not keep the id it erased. */
export const subjectHash = (appId: string, subject: string) =>
  createHash('sha256').update(`${appId}\u0000${subject}`).digest('hex');

/**
 * The database half of erasing a subject, in the caller's transaction: their interactions (and so their
 * feedback), consent history and subject row go; their lineage rows go, and the dataset rows they lineage
 * pointed at are listed for rewriting; model versions trained on those datasets are flagged. Returns null when
 * the app has no such subject.
 *
 * The subject's interactions are locked first. An export committing lineage for one of them holds a key-share
 * lock on it through its foreign key: either that export commits first and its lineage is seen here, or it
 * waits for this transaction and then fails on the deleted key and exports again without them.
 */
export async function eraseSubjectRecords(
  trx: Trx,
  input: { appId: string; subject: string; actor: string },
): Promise<ErasureRecord | null> {
  const subject = await trx
    .selectFrom('subjects')
    .select('id')
    .where('app_id', '=', input.appId)
    .where('external_id', '=', input.subject)
    .forUpdate()
    .executeTakeFirst();
  if (!subject) return null;
  const ofSubject = trx.selectFrom('interactions').select('id').where('subject_id', '=', subject.id);
  const locked = await ofSubject.forUpdate().execute();

  const items = await trx
    .selectFrom('dataset_items as di')
    .innerJoin('interactions as i', 'i.id', 'di.interaction_id')
    .select(['di.dataset_id', 'di.split', 'di.row_sha256', 'i.source'])
    .where('i.subject_id', '=', subject.id)
    .orderBy('di.dataset_id')
    .execute();
  const byDataset = new Map<string, ErasureDataset>();
  for (const it of items) {
    let d = byDataset.get(it.dataset_id);
    if (!d) byDataset.set(it.dataset_id, (d = { datasetId: it.dataset_id, rows: [], rewritten: false, objects: [] }));
    d.rows.push({ split: it.split, rowSha256: it.row_sha256, source: it.source });
  }
  const datasets = [...byDataset.values()];

  const { count: feedback } = await trx
    .selectFrom('feedback')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('interaction_id', 'in', ofSubject)
    .executeTakeFirstOrThrow();

  const erasure = await trx
    .insertInto('erasures')
    .values({
      app_id: input.appId,
      subject_hash: subjectHash(input.appId, input.subject),
      requested_by: input.actor,
      status: datasets.length ? 'pending' : 'done',
      interactions: locked.length,
      feedback: Number(feedback),
      datasets: JSON.stringify(datasets),
      model_versions: '[]',
      completed_at: datasets.length ? null : new Date(),
    })
    .returning('id')
    .executeTakeFirstOrThrow();

  const modelVersions = datasets.length
    ? await trx
        .updateTable('model_versions')
        .set({
          erasure_flags: sql`erasure_flags || jsonb_build_array(jsonb_build_object('erasureId', ${erasure.id}::text, 'at', now()))`,
        })
        .where(
          'dataset_id',
          'in',
          datasets.map((d) => d.datasetId),
        )
        .returning(['id', 'version', 'model_id as model'])
        .execute()
    : [];
  await trx
    .updateTable('erasures')
    .set({ model_versions: JSON.stringify(modelVersions) })
    .where('id', '=', erasure.id)
    .execute();

  // Tombstones: an app that retries an old write of one of these interactions must not bring it back.
  await sql`
    insert into erased_interactions (model_id, external_id_sha256, erasure_id)
    select model_id, sha256(convert_to(external_id, 'UTF8')), ${erasure.id}::uuid
    from interactions where subject_id = ${subject.id}::uuid and external_id is not null
    on conflict do nothing`.execute(trx);
  await trx.deleteFrom('dataset_items').where('interaction_id', 'in', ofSubject).execute();
  await trx.deleteFrom('interactions').where('subject_id', '=', subject.id).execute();
  await trx.deleteFrom('subjects').where('id', '=', subject.id).execute();
  await trx
    .updateTable('erasures')
    .set({ effective_at: sql`clock_timestamp()` })
    .where('id', '=', erasure.id)
    .execute();
  await audit(trx, {
    actor: input.actor,
    action: 'subject.erase',
    targetType: 'erasure',
    targetId: erasure.id,
    details: {
      app: input.appId,
      interactions: locked.length,
      feedback: Number(feedback),
      datasets: datasets.map((d) => ({ id: d.datasetId, rows: d.rows.length })),
      modelVersions: modelVersions.map((v) => v.id),
    },
  });
  return {
    id: erasure.id,
    status: datasets.length ? 'pending' : 'done',
    interactions: locked.length,
    feedback: Number(feedback),
    datasets,
    modelVersions,
  };
}

export async function getErasure(db: Conn, id: string) {
  return db.selectFrom('erasures').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Erasures whose database half committed and whose objects are still to rewrite, oldest first. */
export async function pendingErasureIds(db: Conn): Promise<string[]> {
  const rows = await db
    .selectFrom('erasures')
    .select('id')
    .where('status', '=', 'pending')
    .orderBy('created_at')
    .execute();
  return rows.map((r) => r.id);
}

/** Marks the erasure done; returns its datasets as recorded (each rewritten, with its objects). */
export async function completeErasure(db: Conn, id: string): Promise<ErasureDataset[]> {
  const done = await db
    .updateTable('erasures')
    .set({ status: 'done', completed_at: new Date() })
    .where('id', '=', id)
    .returning('datasets')
    .executeTakeFirstOrThrow();
  return done.datasets;
}

/**
 * When each subject (an app and a subjectHash) was last erased, by the database's clock: the erasure's effective
 * time, or its creation for erasures recorded before that was. Keyed by erasedSubjectKey().
 */
export async function lastErasedAt(db: Conn, subjectHashes: readonly string[]): Promise<Map<string, number>> {
  if (!subjectHashes.length) return new Map();
  const rows = await db
    .selectFrom('erasures')
    .select(['app_id', 'subject_hash', sql<Date>`max(coalesce(effective_at, created_at))`.as('at')])
    .where('subject_hash', 'in', [...new Set(subjectHashes)])
    .groupBy(['app_id', 'subject_hash'])
    .execute();
  return new Map(rows.map((e) => [erasedSubjectKey(e.app_id, e.subject_hash), new Date(e.at).getTime()]));
}

export const erasedSubjectKey = (appId: string, subjectHash: string) => `${appId}\u0000${subjectHash}`;

/** A dataset an erasure rewrites, locked for the rewrite. */
export interface DatasetUnderErasure {
  /** Null when there is no such dataset. */
  dataset: { status: string; manifest: DatasetManifest | null; manifestKey: string } | null;
  /** Gives rows of a rewritten split their new line numbers, by their sha256. */
  renumber(split: 'train' | 'validation', moved: readonly { sha: string; line: number }[]): Promise<void>;
  /** Stores the rewritten manifest (the database's copy). */
  saveManifest(manifest: DatasetManifest): Promise<void>;
}

/**
 * One dataset's part of an erasure, in one transaction under the dataset's row lock, held while `rewrite` rewrites
 * its objects: two erasures (or an erasure and an export's commit) never interleave on one dataset. `rewrite`
 * returns the objects it rewrote; the erasure records the dataset rewritten, with them, in the same transaction.
 */
export async function rewriteDatasetForErasure(
  db: Db,
  erasureId: string,
  datasetId: string,
  rewrite: (locked: DatasetUnderErasure) => Promise<ErasureDataset['objects']>,
): Promise<void> {
  await withPgTransaction(db, async (client) => {
    const { rows } = await client.query<{ status: string; manifest: DatasetManifest | null; manifest_key: string }>(
      'select status, manifest, manifest_key from datasets where id = $1 for update',
      [datasetId],
    );
    const ds = rows[0];
    const objects = await rewrite({
      dataset: ds ? { status: ds.status, manifest: ds.manifest, manifestKey: ds.manifest_key } : null,
      async renumber(split, moved) {
        for (let i = 0; i < moved.length; i += 5000) {
          const chunk = moved.slice(i, i + 5000);
          await client.query(
            `update dataset_items d set line = v.line
             from unnest($2::text[], $3::int[]) as v(sha, line)
             where d.dataset_id = $1 and d.split = $4 and d.row_sha256 = v.sha`,
            [datasetId, chunk.map((m) => m.sha), chunk.map((m) => m.line), split],
          );
        }
      },
      async saveManifest(manifest) {
        await client.query('update datasets set manifest = $2 where id = $1', [datasetId, JSON.stringify(manifest)]);
      },
    });
    await client.query(
      `update erasures set datasets = (
         select jsonb_agg(case when d->>'datasetId' = $2
                               then d || jsonb_build_object('rewritten', true, 'objects', $3::jsonb) else d end)
         from jsonb_array_elements(datasets) d)
       where id = $1`,
      [erasureId, datasetId, JSON.stringify(objects)],
    );
  });
}
