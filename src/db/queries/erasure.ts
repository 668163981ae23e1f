import { createHash } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Database, ErasureDataset } from '../database';
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
  trx: Transaction<Database>,
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
