import { sql } from 'kysely';
import type { VersionStatus } from '../database';
import type { Conn, Trx } from '../pool';

// The model registry: versions, the aliases `production` and `canary` that route traffic, and the append-only
// history of every alias move ("what answered users at time T").

export type AliasName = 'production' | 'canary' | 'shadow';

export interface ServingVersion {
  versionId: string;
  version: string;
  tag: string;
  /** The canary's share of subjects, 0-100; null for production. */
  percent: number | null;
}

/** The aliases of `models` with the versions they point at. */
export async function aliasVersions(db: Conn, models: readonly string[]) {
  if (models.length === 0) return [];
  return db
    .selectFrom('aliases as a')
    .innerJoin('model_versions as v', 'v.id', 'a.version_id')
    .select(['a.model_id', 'a.name', 'a.percent', 'v.id', 'v.version', 'v.ollama_tag'])
    .where('a.model_id', 'in', models)
    .execute();
}

/** A model's aliases as stored (the version each points at, its share, since when). */
export async function listAliases(db: Conn, model: string) {
  return db.selectFrom('aliases').selectAll().where('model_id', '=', model).execute();
}

/** Both aliases of a model with what they point at; versions without an Ollama tag cannot serve and are left out. */
export async function servingAliases(db: Conn, model: string): Promise<Partial<Record<AliasName, ServingVersion>>> {
  const rows = await aliasVersions(db, [model]);
  const out: Partial<Record<AliasName, ServingVersion>> = {};
  for (const r of rows) {
    if (!r.ollama_tag || (r.name !== 'production' && r.name !== 'canary' && r.name !== 'shadow')) continue;
    out[r.name] = { versionId: r.id, version: r.version, tag: r.ollama_tag, percent: r.percent };
  }
  return out;
}

/** The version an alias of a model points at, or null. */
export async function aliasVersionId(db: Conn, model: string, name: AliasName): Promise<string | null> {
  const row = await db
    .selectFrom('aliases')
    .select('version_id')
    .where('model_id', '=', model)
    .where('name', '=', name)
    .executeTakeFirst();
  return row?.version_id ?? null;
}

export async function getVersion(db: Conn, id: string) {
  return db.selectFrom('model_versions').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * The version production points at, with the manifest of the dataset it was trained on (incremental training starts
 * from its adapter and replays its rows; evaluation compares against it). Undefined when nothing is in production.
 */
export async function productionVersion(db: Conn, model: string) {
  return db
    .selectFrom('aliases as a')
    .innerJoin('model_versions as v', 'v.id', 'a.version_id')
    .leftJoin('datasets as d', 'd.id', 'v.dataset_id')
    .select(['v.id', 'v.version', 'v.adapter_key', 'v.base_model', 'd.manifest'])
    .where('a.model_id', '=', model)
    .where('a.name', '=', 'production')
    .executeTakeFirst();
}

/**
 * Records a trained version as a candidate; a retry of the same run rewrites its own row. Undefined when the name is
 * taken by another run's version (which is never touched).
 */
export async function insertCandidateVersion(
  db: Conn,
  v: {
    model: string;
    version: string;
    runId: string;
    datasetId: string;
    adapterKey: string;
    baseModel: string;
    metrics: unknown;
  },
): Promise<{ id: string } | undefined> {
  const metrics = JSON.stringify({ train: v.metrics });
  return db
    .insertInto('model_versions')
    .values({
      model_id: v.model,
      version: v.version,
      run_id: v.runId,
      dataset_id: v.datasetId,
      status: 'candidate',
      adapter_key: v.adapterKey,
      base_model: v.baseModel,
      ollama_tag: null,
      metrics,
    })
    .onConflict((oc) =>
      oc
        .columns(['model_id', 'version'])
        .doUpdateSet({ adapter_key: v.adapterKey, base_model: v.baseModel, metrics })
        .where('model_versions.run_id', '=', v.runId),
    )
    .returning('id')
    .executeTakeFirst();
}

/** The version is in Ollama as `tag` and passed its parity check. */
export async function markRegistered(db: Conn, id: string, tag: string): Promise<void> {
  await db
    .updateTable('model_versions')
    .set({ ollama_tag: tag, status: 'registered', status_reason: null, status_at: new Date() })
    .where('id', '=', id)
    .execute();
}

export async function setVersionStatus(db: Conn, id: string, status: VersionStatus, reason: string | null) {
  await db
    .updateTable('model_versions')
    .set({ status, status_reason: reason, status_at: new Date() })
    .where('id', '=', id)
    .execute();
}

/** Merges `patch` into the version's metrics under `key` (one key per stage: train, eval, register, gate, ...). */
export async function mergeVersionMetrics(db: Conn, id: string, key: string, value: unknown) {
  await db
    .updateTable('model_versions')
    .set({
      metrics: sql`coalesce(metrics, '{}'::jsonb) || jsonb_build_object(${key}::text, ${JSON.stringify(value)}::jsonb)`,
    })
    .where('id', '=', id)
    .execute();
}

/**
 * Points alias `name` of `model` at `versionId` (null: removes it) with `percent`, and appends the move to the
 * history. A move to where the alias already points, at the same percent, changes nothing and records nothing:
 * retries are free. Call inside a transaction with whatever else must move with it.
 */
export async function moveAlias(
  trx: Trx,
  move: {
    model: string;
    name: AliasName;
    versionId: string | null;
    percent: number | null;
    actor: string;
    reason: string | null;
  },
): Promise<{ moved: boolean; from: string | null }> {
  // Serialise moves of one model's aliases (the row may not exist yet, so lock the model row).
  await trx.selectFrom('models').select('id').where('id', '=', move.model).forUpdate().executeTakeFirst();
  const current = await trx
    .selectFrom('aliases')
    .select(['version_id', 'percent'])
    .where('model_id', '=', move.model)
    .where('name', '=', move.name)
    .executeTakeFirst();
  const from = current?.version_id ?? null;
  if (from === move.versionId && (current?.percent ?? null) === move.percent) return { moved: false, from };
  if (move.versionId === null) {
    await trx.deleteFrom('aliases').where('model_id', '=', move.model).where('name', '=', move.name).execute();
  } else {
    await trx
      .insertInto('aliases')
      .values({ model_id: move.model, name: move.name, version_id: move.versionId, percent: move.percent })
      .onConflict((oc) =>
        oc
          .columns(['model_id', 'name'])
          .doUpdateSet({ version_id: move.versionId!, percent: move.percent, updated_at: new Date() }),
      )
      .execute();
  }
  await trx
    .insertInto('alias_history')
    .values({
      model_id: move.model,
      name: move.name,
      from_version_id: from,
      to_version_id: move.versionId,
      actor: move.actor,
      reason: move.reason,
      percent: move.percent,
    })
    .execute();
  return { moved: true, from };
}

/**
 * What a rollback returns to: the most recent version production pointed at before, other than the current one
 * and never one that was itself rolled back (so rolling back twice does not bring the bad version back).
 * Null when there is none.
 */
export async function previousProduction(db: Conn, model: string): Promise<string | null> {
  const current = await aliasVersionId(db, model, 'production');
  if (!current) return null;
  const row = await db
    .selectFrom('alias_history as h')
    .innerJoin('model_versions as v', 'v.id', 'h.from_version_id')
    .select('h.from_version_id')
    .where('h.model_id', '=', model)
    .where('h.name', '=', 'production')
    .where('h.from_version_id', '!=', current)
    .where('v.status', 'not in', ['rolled_back', 'failed', 'rejected'])
    .where('v.ollama_tag', 'is not', null)
    .orderBy('h.id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.from_version_id ?? null;
}

export async function listVersions(db: Conn, model: string) {
  return db
    .selectFrom('model_versions')
    .select([
      'id',
      'version',
      'status',
      'status_reason',
      'status_at',
      'run_id',
      'dataset_id',
      'ollama_tag',
      'adapter_key',
      'metrics',
      'erasure_flags',
      'created_at',
    ])
    .where('model_id', '=', model)
    .orderBy('created_at', 'desc')
    .execute();
}

export async function aliasHistory(db: Conn, model: string, limit = 100) {
  return db
    .selectFrom('alias_history as h')
    .leftJoin('model_versions as f', 'f.id', 'h.from_version_id')
    .leftJoin('model_versions as t', 't.id', 'h.to_version_id')
    .select(['h.id', 'h.name', 'h.actor', 'h.reason', 'h.percent', 'h.at', 'f.version as from', 't.version as to'])
    .where('h.model_id', '=', model)
    .orderBy('h.id', 'desc')
    .limit(limit)
    .execute();
}

/** Which version answered as `alias` at `at`: the last move of the alias at or before that time. */
export async function aliasAt(db: Conn, model: string, alias: AliasName, at: Date) {
  return db
    .selectFrom('alias_history as h')
    .leftJoin('model_versions as t', 't.id', 'h.to_version_id')
    .select(['t.id', 't.version', 'h.at'])
    .where('h.model_id', '=', model)
    .where('h.name', '=', alias)
    .where('h.at', '<=', at)
    .orderBy('h.id', 'desc')
    .limit(1)
    .executeTakeFirst();
}

/** When the last move of `name` to the version at `percent` was recorded (a canary step's start). */
export async function lastMoveAt(
  db: Conn,
  move: { model: string; name: AliasName; versionId: string; percent: number | null },
): Promise<Date> {
  const row = await db
    .selectFrom('alias_history')
    .select('at')
    .where('model_id', '=', move.model)
    .where('name', '=', move.name)
    .where('to_version_id', '=', move.versionId)
    .where('percent', move.percent === null ? 'is' : '=', move.percent)
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirstOrThrow();
  return row.at;
}
