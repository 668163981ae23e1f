import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database, VersionStatus } from '../database';

// The model registry: versions, the aliases `production` and `canary` that route traffic, and the append-only
// history of every alias move ("what answered users at time T").

type Conn = Kysely<Database> | Transaction<Database>;

export type AliasName = 'production' | 'canary';

export interface ServingVersion {
  versionId: string;
  version: string;
  tag: string;
  /** The canary's share of subjects, 0-100; null for production. */
  percent: number | null;
}

/** Both aliases of a model with what they point at; versions without an Ollama tag cannot serve and are left out. */
export async function servingAliases(db: Conn, model: string): Promise<Partial<Record<AliasName, ServingVersion>>> {
  const rows = await db
    .selectFrom('aliases as a')
    .innerJoin('model_versions as v', 'v.id', 'a.version_id')
    .select(['a.name', 'a.percent', 'v.id', 'v.version', 'v.ollama_tag'])
    .where('a.model_id', '=', model)
    .execute();
  const out: Partial<Record<AliasName, ServingVersion>> = {};
  for (const r of rows) {
    if (!r.ollama_tag || (r.name !== 'production' && r.name !== 'canary')) continue;
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
  trx: Transaction<Database>,
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
