import type { Kysely, Transaction } from 'kysely';
import type { ModelDefinition } from '../../domain/model-config';
import type { Database, Model } from '../database';

type Conn = Kysely<Database> | Transaction<Database>;

export async function getModel(db: Conn, id: string): Promise<Model | undefined> {
  return db.selectFrom('models').selectAll().where('id', '=', id).executeTakeFirst();
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
