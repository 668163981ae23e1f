import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { buildRow, exportConfigHash, serializeRow, sha256Hex, splitOf, type FeedbackFacts } from '../dataset/rows';
import type { ChatMessage } from '../db/database';
import { getModel } from '../db/queries/models';
import { parsePipelineConfig } from '../domain/model-config';
import type { BlobInfo } from '../storage/blob-store';
import { activityLog, heartbeat, type ActivityDeps } from './deps';
import { FailureType, permanentFailure } from './failures';

export interface ExportInput {
  runId: string;
  model: string;
  datasetId: string;
}

export interface SplitSummary {
  key: string;
  count: number;
  bytes: number;
  sha256: string;
}

export interface DatasetManifest {
  format: 'tuneloop.dataset/v1';
  rowFormat: 'chat-messages';
  datasetId: string;
  model: string;
  runId: string | null;
  watermark: { fromSeqExclusive: number; toSeqInclusive: number };
  configHash: string;
  splits: { train: SplitSummary; validation: SplitSummary };
  counts: {
    considered: number;
    exported: number;
    duplicatesDropped: number;
    negativeFeedback: number;
    invalid: number;
    corrected: number;
  };
  sources: Record<string, { train: number; validation: number }>;
}

export interface ExportSummary {
  datasetId: string;
  manifestKey: string;
  train: SplitSummary;
  validation: SplitSummary;
  counts: DatasetManifest['counts'];
}

const PAGE = 500;

interface Item {
  interactionId: string;
  split: 'train' | 'validation';
  line: number;
  rowSha256: string;
}

/**
 * export: streams the collected range (consent re-checked now, so a withdrawal or erasure since collect is
 * honoured) into train/validation JSONL objects and a manifest written last, then records every row's
 * lineage and marks the dataset ready in one transaction. Keys derive from the dataset id, so a retry after
 * a crash rewrites the same objects with the same bytes and leaves exactly one dataset behind.
 */
export function createExportActivities(deps: ActivityDeps) {
  return {
    async exportDataset(input: ExportInput): Promise<ExportSummary> {
      const log = activityLog(deps, { model: input.model, datasetId: input.datasetId });
      const dataset = await deps.db
        .selectFrom('datasets')
        .selectAll()
        .where('id', '=', input.datasetId)
        .executeTakeFirst();
      if (!dataset)
        throw permanentFailure(FailureType.DATASET_INVALID, `dataset ${input.datasetId} was never collected`);
      if (dataset.status === 'ready') return summaryOf(dataset.manifest_key!, dataset.manifest as DatasetManifest);
      if (dataset.status === 'abandoned') {
        throw permanentFailure(FailureType.DATASET_INVALID, `dataset ${input.datasetId} was abandoned`);
      }
      const model = await getModel(deps.db, input.model);
      if (!model) throw permanentFailure(FailureType.MODEL_NOT_FOUND, `model ${input.model} does not exist`);
      const config = parsePipelineConfig(model.config);

      await mkdir(deps.tmpDir, { recursive: true });
      const work = await mkdtemp(path.join(deps.tmpDir, `export-${input.datasetId}-`));
      try {
        const files = { train: path.join(work, 'train.jsonl'), validation: path.join(work, 'validation.jsonl') };
        const out = { train: createWriteStream(files.train), validation: createWriteStream(files.validation) };
        const lines = { train: 0, validation: 0 };
        const counts = {
          considered: 0,
          exported: 0,
          duplicatesDropped: 0,
          negativeFeedback: 0,
          invalid: 0,
          corrected: 0,
        };
        const sources: DatasetManifest['sources'] = {};
        const seen = new Set<string>();
        const items: Item[] = [];

        try {
          // One query, read through a server-side cursor: a snapshot of the range with consent as it is now,
          // in seq order, PAGE rows at a time. (Keyset pages re-planned per page degrade to a full sort per
          // page while a freshly loaded table has no statistics.)
          for await (const r of rangeQuery(deps, input.model, dataset.from_seq, dataset.to_seq).stream(PAGE)) {
            counts.considered++;
            const decision = buildRow(
              { id: r.id, seq: r.seq, source: r.source, messages: r.messages, feedback: r.feedback },
              model.system_prompt,
            );
            if (decision.kind === 'negative') counts.negativeFeedback++;
            if (decision.kind === 'invalid') counts.invalid++;
            if (decision.kind !== 'sft') continue;
            const text = serializeRow(decision.row);
            const rowSha256 = sha256Hex(text);
            if (seen.has(rowSha256)) {
              counts.duplicatesDropped++;
              continue;
            }
            seen.add(rowSha256);
            const split = splitOf(r.id, config.validationShare);
            await write(out[split], text + '\n');
            items.push({ interactionId: r.id, split, line: ++lines[split], rowSha256 });
            counts.exported++;
            if (decision.corrected) counts.corrected++;
            (sources[r.source] ??= { train: 0, validation: 0 })[split]++;
            if (counts.considered % PAGE === 0) heartbeat({ rows: counts.considered });
          }
        } finally {
          await Promise.all([close(out.train), close(out.validation)]);
        }

        // Objects first, manifest last: a dataset without its manifest does not exist.
        const put = async (name: 'train' | 'validation'): Promise<SplitSummary> => {
          const info: BlobInfo = await deps.store.put(`${dataset.prefix}${name}.jsonl`, createReadStream(files[name]), {
            contentType: 'application/jsonl',
          });
          heartbeat({ uploaded: name });
          return { key: info.key, count: lines[name], bytes: info.size, sha256: info.sha256 };
        };
        const manifest: DatasetManifest = {
          format: 'tuneloop.dataset/v1',
          rowFormat: 'chat-messages',
          datasetId: dataset.id,
          model: input.model,
          runId: dataset.run_id,
          watermark: { fromSeqExclusive: dataset.from_seq, toSeqInclusive: dataset.to_seq },
          configHash: exportConfigHash({
            systemPrompt: model.system_prompt,
            validationShare: config.validationShare,
            format: 'chat-messages',
          }),
          splits: { train: await put('train'), validation: await put('validation') },
          counts,
          sources,
        };
        const manifestKey = `${dataset.prefix}manifest.json`;
        await deps.store.put(manifestKey, JSON.stringify(manifest, null, 2) + '\n', {
          contentType: 'application/json',
        });

        const committed = await deps.db.transaction().execute(async (trx) => {
          // Serialises with a concurrent retry of this activity and with the run's cleanup, which lock the row.
          const current = await trx
            .selectFrom('datasets')
            .select('status')
            .where('id', '=', dataset.id)
            .forUpdate()
            .executeTakeFirstOrThrow();
          if (current.status === 'ready') return true;
          if (current.status !== 'collected') return false;
          await trx.deleteFrom('dataset_items').where('dataset_id', '=', dataset.id).execute();
          for (let i = 0; i < items.length; i += 1000) {
            await trx
              .insertInto('dataset_items')
              .values(
                items.slice(i, i + 1000).map((it) => ({
                  dataset_id: dataset.id,
                  interaction_id: it.interactionId,
                  split: it.split,
                  line: it.line,
                  row_sha256: it.rowSha256,
                })),
              )
              .execute();
          }
          await trx
            .updateTable('datasets')
            .set({
              status: 'ready',
              manifest_key: manifestKey,
              manifest: JSON.stringify(manifest),
              config_hash: manifest.configHash,
              ready_at: sql<Date>`now()`,
            })
            .where('id', '=', dataset.id)
            .execute();
          return true;
        });
        if (!committed) {
          // The run was aborted while this attempt was uploading: take back what it wrote.
          await deps.store.deletePrefix(dataset.prefix);
          throw permanentFailure(FailureType.DATASET_INVALID, `dataset ${dataset.id} was abandoned during export`);
        }
        log.info({ counts, manifestKey }, 'dataset exported');
        return summaryOf(manifestKey, manifest);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
  };
}

function summaryOf(manifestKey: string, m: DatasetManifest): ExportSummary {
  return {
    datasetId: m.datasetId,
    manifestKey,
    train: m.splits.train,
    validation: m.splits.validation,
    counts: m.counts,
  };
}

interface RangeRow {
  id: string;
  seq: number;
  source: string;
  messages: ChatMessage[];
  feedback: FeedbackFacts[];
}

function rangeQuery(deps: ActivityDeps, model: string, afterSeq: number, toSeq: number) {
  return deps.db
    .selectFrom('interactions as i')
    .innerJoin('subjects as s', 's.id', 'i.subject_id')
    .select([
      'i.id',
      'i.seq',
      'i.source',
      'i.messages',
      sql<FeedbackFacts[]>`coalesce((
        select json_agg(json_build_object('thumbs', f.thumbs, 'rating', f.rating, 'correction', f.correction,
                                          'createdAt', to_char(f.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
                        order by f.created_at, f.id)
        from feedback f where f.interaction_id = i.id), '[]'::json)`.as('feedback'),
    ])
    .where('i.model_id', '=', model)
    .where('i.seq', '>', afterSeq)
    .where('i.seq', '<=', toSeq)
    .where('s.training_consent', '=', true)
    .orderBy('i.seq')
    .$castTo<RangeRow>();
}

async function write(stream: WriteStream, chunk: string): Promise<void> {
  if (!stream.write(chunk)) await once(stream, 'drain');
}

async function close(stream: WriteStream): Promise<void> {
  if (stream.closed) return;
  await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
}
