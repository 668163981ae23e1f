import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';
import type { ChatMessage } from '../domain/conversation';

// One interface per table, assembled into Database. They sit in one file rather than a file each: the tables
// are small and reading them side by side is how the schema is reviewed. Columns mirror migrations/.

// JSON columns are written as JSON text (pg would send a JS array as a Postgres array, not JSON).
type GeneratedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null, Date | string | null>;
type Json<T> = ColumnType<T, string, string>;
type GeneratedJson<T> = ColumnType<T, string | undefined, string>;
type NullableJson<T> = ColumnType<T | null, string | null, string | null>;

export interface AppTable {
  id: string;
  name: string;
  created_at: GeneratedTimestamp;
}

export interface ModelTable {
  id: string;
  app_id: string;
  base_model: string;
  task_format: string;
  system_prompt: string | null;
  output_schema: NullableJson<unknown>;
  config: GeneratedJson<unknown>;
  watermark_seq: Generated<number>;
  created_at: GeneratedTimestamp;
  updated_at: GeneratedTimestamp;
}

export interface SubjectTable {
  id: Generated<string>;
  app_id: string;
  external_id: string;
  training_consent: boolean | null;
  consent_policy_version: string | null;
  consent_updated_at: NullableTimestamp;
  created_at: GeneratedTimestamp;
}

export interface ConsentEventTable {
  id: Generated<number>;
  subject_id: string;
  training: boolean;
  policy_version: string;
  at: GeneratedTimestamp;
}

export interface InteractionTable {
  id: Generated<string>;
  seq: Generated<number>;
  model_id: string;
  subject_id: string;
  external_id: string | null;
  source: Generated<string>;
  messages: Json<ChatMessage[]>;
  metadata: GeneratedJson<Record<string, unknown>>;
  model_version_id: string | null;
  latency_ms: number | null;
  created_at: GeneratedTimestamp;
}

export interface FeedbackTable {
  id: Generated<string>;
  interaction_id: string;
  thumbs: 'up' | 'down' | null;
  rating: number | null;
  correction: string | null;
  comment: string | null;
  /** The app's own id for this feedback: a retried POST with the same id is not stored twice. */
  external_id: string | null;
  created_at: GeneratedTimestamp;
}

export interface RunTable {
  id: string;
  workflow_id: string;
  model_id: string;
  status: string;
  stage: string | null;
  trigger: string;
  requested_by: string | null;
  request_id: string | null;
  stages: GeneratedJson<unknown[]>;
  result: NullableJson<unknown>;
  error: string | null;
  started_at: GeneratedTimestamp;
  ended_at: NullableTimestamp;
}

export interface DatasetTable {
  id: string;
  model_id: string;
  run_id: string | null;
  status: 'collected' | 'ready' | 'abandoned';
  from_seq: number;
  to_seq: number;
  prefix: string;
  manifest_key: string | null;
  manifest: NullableJson<unknown>;
  config_hash: string | null;
  created_at: GeneratedTimestamp;
  ready_at: NullableTimestamp;
  /** The score stage's quality report (numbers and interaction ids, no text); null when the stage did not run. */
  quality: NullableJson<unknown>;
}

/** The score stage's cache: a judge's score of a row's redacted bytes, tied to the interaction it was made for. */
export interface RowScoreTable {
  judge: string;
  rubric_sha256: string;
  row_sha256: string;
  interaction_id: string;
  score: number;
  reason: string;
  created_at: GeneratedTimestamp;
}

export interface DatasetItemTable {
  dataset_id: string;
  interaction_id: string;
  split: 'train' | 'validation';
  line: number;
  row_sha256: string;
}

export interface ErasureDataset {
  datasetId: string;
  /** The erased subject's rows, by their bytes' sha256 (the dataset's rows are unique by it). */
  rows: { split: 'train' | 'validation'; rowSha256: string; source: string }[];
  rewritten: boolean;
  objects: { key: string; sha256: string; bytes: number }[];
}

/** An object written from a dataset's rows (JSON lines, each with the `row` it came from): erasure reaches it. */
export interface DerivedObjectTable {
  key: string;
  dataset_id: string;
  run_id: string | null;
  kind: string;
  created_at: GeneratedTimestamp;
}

export interface ErasureTable {
  id: Generated<string>;
  app_id: string;
  subject_hash: string;
  requested_by: string;
  status: 'pending' | 'done';
  interactions: number;
  feedback: number;
  datasets: GeneratedJson<ErasureDataset[]>;
  model_versions: GeneratedJson<{ id: string; version: string; model: string }[]>;
  created_at: GeneratedTimestamp;
  completed_at: NullableTimestamp;
  /** When the database half ended (its last statement; null on erasures before it was recorded). */
  effective_at: NullableTimestamp;
}

/** An erased interaction's (model, app id), the id kept only as a hash: a retried write of it is refused. */
export interface ErasedInteractionTable {
  model_id: string;
  external_id_sha256: Buffer;
  erasure_id: string;
  at: GeneratedTimestamp;
}

export interface ModelVersionTable {
  id: Generated<string>;
  model_id: string;
  version: string;
  run_id: string | null;
  dataset_id: string | null;
  status: string;
  adapter_key: string | null;
  /** The base model the adapter was trained on (models.base_model at the time); null only for rows before 2026-12-03. */
  base_model: string | null;
  ollama_tag: string | null;
  metrics: NullableJson<unknown>;
  erasure_flags: GeneratedJson<unknown[]>;
  created_at: GeneratedTimestamp;
  status_reason: string | null;
  status_at: NullableTimestamp;
}

/**
 * A version's life: `candidate` (trained) → `rejected` (the gate said no) | `registered` (in Ollama, parity
 * checked) → `canary` → `production` → `previous` (replaced, kept for rollback) | `rolled_back` (the canary or
 * an operator took it out) | `failed` (registration failed its parity check).
 */
export type VersionStatus =
  'candidate' | 'rejected' | 'failed' | 'registered' | 'canary' | 'production' | 'previous' | 'rolled_back';

export interface ServingCallTable {
  id: Generated<number>;
  model_id: string;
  version_id: string | null;
  alias: 'production' | 'canary';
  ok: boolean;
  fell_back: Generated<boolean>;
  error: string | null;
  latency_ms: number;
  schema_valid: boolean | null;
  interaction_id: string | null;
  /** The API's id for the call (the interaction's id when it answered); null on calls recorded before it existed. */
  call_id: string | null;
  /** Who answered: a local version or the app's hosted incumbent; null when nothing did. */
  answered_by: 'local' | 'incumbent' | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  at: GeneratedTimestamp;
}

export interface ShadowPairTable {
  id: Generated<string>;
  model_id: string;
  version_id: string;
  interaction_id: string | null;
  status: 'answered' | 'failed' | 'dropped';
  messages: NullableJson<unknown>;
  production_answer: string | null;
  candidate_answer: string | null;
  production_latency_ms: number | null;
  candidate_latency_ms: number | null;
  error: string | null;
  outcome: 'win' | 'loss' | 'tie' | null;
  at: GeneratedTimestamp;
}

export interface CheckpointTable {
  id: Generated<string>;
  run_id: string;
  step: number;
  key: string;
  manifest_sha256: string;
  bytes: number;
  created_at: GeneratedTimestamp;
  deleted_at: NullableTimestamp;
}

export interface AliasTable {
  model_id: string;
  name: string;
  version_id: string;
  percent: number | null;
  updated_at: GeneratedTimestamp;
}

export interface AliasHistoryTable {
  id: Generated<number>;
  model_id: string;
  name: string;
  from_version_id: string | null;
  to_version_id: string | null;
  actor: string;
  reason: string | null;
  at: GeneratedTimestamp;
  percent: number | null;
}

export type Role = 'app' | 'operator' | 'admin';

export interface ApiKeyTable {
  id: string;
  secret_sha256: string;
  name: string;
  role: Role;
  app_id: string | null;
  models: Generated<string[]>;
  created_at: GeneratedTimestamp;
  revoked_at: NullableTimestamp;
}

/** The train stage's curves: one row per logged step (`train`) and per held-out evaluation (`validation`). */
export interface TrainLogTable {
  run_id: string;
  kind: 'train' | 'validation';
  step: number;
  loss: number | null;
  lr: number | null;
  tokens_per_s: number | null;
  at: GeneratedTimestamp;
}

/** An operator page session: the sha256 of its cookie's secret, the operator key it came from. */
export interface OperatorSessionTable {
  secret_sha256: string;
  key_id: string;
  created_at: GeneratedTimestamp;
  expires_at: Date;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: GeneratedTimestamp;
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  details: GeneratedJson<Record<string, unknown>>;
}

export interface Database {
  apps: AppTable;
  models: ModelTable;
  subjects: SubjectTable;
  consent_events: ConsentEventTable;
  interactions: InteractionTable;
  shadow_pairs: ShadowPairTable;
  row_scores: RowScoreTable;
  train_log: TrainLogTable;
  operator_sessions: OperatorSessionTable;
  feedback: FeedbackTable;
  runs: RunTable;
  datasets: DatasetTable;
  dataset_items: DatasetItemTable;
  model_versions: ModelVersionTable;
  checkpoints: CheckpointTable;
  aliases: AliasTable;
  alias_history: AliasHistoryTable;
  api_keys: ApiKeyTable;
  audit_log: AuditLogTable;
  erasures: ErasureTable;
  erased_interactions: ErasedInteractionTable;
  serving_calls: ServingCallTable;
  derived_objects: DerivedObjectTable;
}

export type Model = Selectable<ModelTable>;
export type NewModel = Insertable<ModelTable>;
export type Interaction = Selectable<InteractionTable>;
export type NewInteraction = Insertable<InteractionTable>;
export type Run = Selectable<RunTable>;
export type RunUpdate = Updateable<RunTable>;
export type Dataset = Selectable<DatasetTable>;
export type ApiKey = Selectable<ApiKeyTable>;
export type Subject = Selectable<SubjectTable>;
