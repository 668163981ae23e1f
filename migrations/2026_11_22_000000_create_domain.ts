/* eslint-disable @typescript-eslint/no-explicit-any -- migrations are frozen in time and must not depend on today's Database type */
import { sql, type Kysely } from 'kysely';

// The schema for the whole domain, so later work adds columns rather than tables.
// Frozen once landed: never edit; add a new migration instead.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('apps')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  // A model is one app's pipeline: base model, task format, prompt, thresholds, stage switches (config JSON).
  await db.schema
    .createTable('models')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('app_id', 'text', (c) => c.notNull().references('apps.id'))
    .addColumn('base_model', 'text', (c) => c.notNull())
    .addColumn('task_format', 'text', (c) => c.notNull())
    .addColumn('system_prompt', 'text')
    .addColumn('output_schema', 'jsonb')
    .addColumn('config', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    // Highest interaction seq included in a succeeded run; moves only when that run succeeds.
    .addColumn('watermark_seq', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  // The app's pseudonymous end users. Consent lives here; its history in consent_events.
  await db.schema
    .createTable('subjects')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('app_id', 'text', (c) => c.notNull().references('apps.id'))
    .addColumn('external_id', 'text', (c) => c.notNull())
    .addColumn('training_consent', 'boolean')
    .addColumn('consent_policy_version', 'text')
    .addColumn('consent_updated_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('subjects_app_external_uq', ['app_id', 'external_id'])
    .execute();

  await db.schema
    .createTable('consent_events')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('subject_id', 'uuid', (c) => c.notNull().references('subjects.id').onDelete('cascade'))
    .addColumn('training', 'boolean', (c) => c.notNull())
    .addColumn('policy_version', 'text', (c) => c.notNull())
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  // Canonical form: chat messages. seq is the watermark axis (monotonic, unlike timestamps).
  await db.schema
    .createTable('interactions')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('seq', 'bigserial', (c) => c.notNull().unique())
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id'))
    .addColumn('subject_id', 'uuid', (c) => c.notNull().references('subjects.id').onDelete('cascade'))
    .addColumn('external_id', 'text')
    .addColumn('source', 'text', (c) => c.notNull().defaultTo('api'))
    .addColumn('messages', 'jsonb', (c) => c.notNull())
    .addColumn('metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('model_version_id', 'uuid')
    .addColumn('latency_ms', 'integer')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('interactions_model_external_uq', ['model_id', 'external_id'])
    .execute();
  await db.schema.createIndex('interactions_model_seq_idx').on('interactions').columns(['model_id', 'seq']).execute();
  await db.schema.createIndex('interactions_subject_idx').on('interactions').column('subject_id').execute();

  await db.schema
    .createTable('feedback')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('interaction_id', 'uuid', (c) => c.notNull().references('interactions.id').onDelete('cascade'))
    .addColumn('thumbs', 'text', (c) => c.check(sql`thumbs in ('up', 'down')`))
    .addColumn('rating', 'smallint', (c) => c.check(sql`rating between 1 and 5`))
    .addColumn('correction', 'text')
    .addColumn('comment', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('feedback_interaction_idx').on('feedback').column('interaction_id').execute();

  await db.schema
    .createTable('runs')
    .addColumn('id', 'text', (c) => c.primaryKey()) // the Temporal run id
    .addColumn('workflow_id', 'text', (c) => c.notNull())
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id'))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('stage', 'text')
    .addColumn('trigger', 'text', (c) => c.notNull())
    .addColumn('requested_by', 'text')
    // The id the starter put in the workflow input; tells the caller who really started a run.
    .addColumn('request_id', 'text')
    .addColumn('stages', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('result', 'jsonb')
    .addColumn('error', 'text')
    .addColumn('started_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('ended_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('runs_model_started_idx').on('runs').columns(['model_id', 'started_at']).execute();

  await db.schema
    .createTable('datasets')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id'))
    .addColumn('run_id', 'text', (c) => c.references('runs.id'))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('from_seq', 'bigint', (c) => c.notNull())
    .addColumn('to_seq', 'bigint', (c) => c.notNull())
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('manifest_key', 'text')
    .addColumn('manifest', 'jsonb')
    .addColumn('config_hash', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('ready_at', 'timestamptz')
    .execute();

  // Lineage: every exported row knows the interaction it came from.
  await db.schema
    .createTable('dataset_items')
    .addColumn('dataset_id', 'text', (c) => c.notNull().references('datasets.id').onDelete('cascade'))
    .addColumn('interaction_id', 'uuid', (c) => c.notNull())
    .addColumn('split', 'text', (c) => c.notNull().check(sql`split in ('train', 'validation')`))
    .addColumn('line', 'integer', (c) => c.notNull())
    .addColumn('row_sha256', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('dataset_items_pk', ['dataset_id', 'interaction_id'])
    .execute();
  await db.schema.createIndex('dataset_items_interaction_idx').on('dataset_items').column('interaction_id').execute();

  await db.schema
    .createTable('model_versions')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id'))
    .addColumn('version', 'text', (c) => c.notNull())
    .addColumn('run_id', 'text', (c) => c.references('runs.id'))
    .addColumn('dataset_id', 'text', (c) => c.references('datasets.id'))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('adapter_key', 'text')
    .addColumn('ollama_tag', 'text')
    .addColumn('metrics', 'jsonb')
    .addColumn('erasure_flags', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('model_versions_model_version_uq', ['model_id', 'version'])
    .execute();

  await db.schema
    .createTable('checkpoints')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
    .addColumn('step', 'integer', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('manifest_sha256', 'text', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('deleted_at', 'timestamptz')
    .addUniqueConstraint('checkpoints_run_step_uq', ['run_id', 'step'])
    .execute();

  await db.schema
    .createTable('aliases')
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('version_id', 'uuid', (c) => c.notNull().references('model_versions.id'))
    .addColumn('percent', 'smallint', (c) => c.check(sql`percent between 0 and 100`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('aliases_pk', ['model_id', 'name'])
    .execute();

  await db.schema
    .createTable('alias_history')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('model_id', 'text', (c) => c.notNull().references('models.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('from_version_id', 'uuid')
    .addColumn('to_version_id', 'uuid')
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  // Keys are stored as sha256 of a 256-bit random secret: fast to check, useless if the table leaks.
  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey()) // the public prefix shown in the key
    .addColumn('secret_sha256', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull().check(sql`role in ('app', 'operator', 'admin')`))
    .addColumn('app_id', 'text', (c) => c.references('apps.id'))
    .addColumn('models', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', 'timestamptz')
    .addCheckConstraint('api_keys_app_scope', sql`role <> 'app' or app_id is not null`)
    .execute();

  await db.schema
    .createTable('audit_log')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('target_type', 'text', (c) => c.notNull())
    .addColumn('target_id', 'text', (c) => c.notNull())
    .addColumn('details', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of [
    'audit_log',
    'api_keys',
    'alias_history',
    'aliases',
    'checkpoints',
    'model_versions',
    'dataset_items',
    'datasets',
    'runs',
    'feedback',
    'interactions',
    'consent_events',
    'subjects',
    'models',
    'apps',
  ]) {
    await db.schema.dropTable(t).ifExists().execute();
  }
}
