import { sql } from 'kysely';
import { parsePipelineConfig, type ModelDefinition } from '../../domain/model-config';
import type { Model } from '../database';
import type { Conn } from '../pool';

export async function getModel(db: Conn, id: string): Promise<Model | undefined> {
  return db.selectFrom('models').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function modelExists(db: Conn, id: string): Promise<boolean> {
  return (await db.selectFrom('models').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
}

/** The app of each of `ids` that exists (a missing model has no entry). */
export async function appsOfModels(db: Conn, ids: readonly string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('models').select(['id', 'app_id']).where('id', 'in', ids).execute();
  return new Map(rows.map((m) => [m.id, m.app_id]));
}

/** What the chat API needs of a model: its app and its serving fields. Null when there is no such model. */
export async function servingModel(db: Conn, id: string) {
  const row = await db
    .selectFrom('models')
    .select(['id', 'app_id', 'system_prompt', 'output_schema', 'config'])
    .where('id', '=', id)
    .executeTakeFirst();
  if (!row) return null;
  const config = parsePipelineConfig(row.config);
  return {
    id: row.id,
    appId: row.app_id,
    systemPrompt: row.system_prompt,
    outputSchema: (row.output_schema as Record<string, unknown> | null) ?? null,
    incumbent: config.incumbent ?? null,
    fallback: config.fallback,
    shadow: config.shadow,
  };
}

/** Moves the model's watermark up to `toSeq` (never down). */
export async function advanceWatermark(db: Conn, id: string, toSeq: number): Promise<void> {
  await db
    .updateTable('models')
    .set({ watermark_seq: sql<number>`greatest(watermark_seq, ${toSeq})`, updated_at: new Date() })
    .where('id', '=', id)
    .execute();
}

export async function appExists(db: Conn, id: string): Promise<boolean> {
  return (await db.selectFrom('apps').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
}

export async function listModels(db: Conn, ids?: readonly string[]): Promise<Model[]> {
  let q = db.selectFrom('models').selectAll().orderBy('id');
  if (ids) {
    if (ids.length === 0) return [];
    q = q.where('id', 'in', ids);
  }
  return q.execute();
}

/** Creates or replaces a model's definition; the watermark is kept. The app must exist or is created. */
export async function upsertModel(db: Conn, def: ModelDefinition): Promise<Model> {
  await db
    .insertInto('apps')
    .values({ id: def.app, name: def.app })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  const values = {
    id: def.id,
    app_id: def.app,
    base_model: def.baseModel,
    task_format: def.taskFormat,
    system_prompt: def.systemPrompt ?? null,
    output_schema: def.outputSchema ? JSON.stringify(def.outputSchema) : null,
    config: JSON.stringify(def.config),
  };
  const existing = await getModel(db, def.id);
  if (existing && existing.app_id !== def.app) {
    throw new Error(`model ${def.id} belongs to app ${existing.app_id}, not ${def.app}`);
  }
  return db
    .insertInto('models')
    .values(values)
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        base_model: values.base_model,
        task_format: values.task_format,
        system_prompt: values.system_prompt,
        output_schema: values.output_schema,
        config: values.config,
        updated_at: new Date(),
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}
