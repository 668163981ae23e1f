import { createHash } from 'node:crypto';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { exportConfigHash, serializeRow, splitOf } from '../dataset/rows';
import { withPgTransaction } from '../db/pool';
import { parsePipelineConfig } from '../domain/model-config';
import { DigestStream, type BlobInfo, type BlobStore } from '../storage/blob-store';
import type { AnonymizedLine, AnonymizeSummary } from './anonymize';
import { activityLog, heartbeat, type ActivityDeps } from './deps';
import { FailureType, permanentFailure, retryableFailure } from './failures';
import { requireDataset, requireModel } from './lookups';
import { linesOf, lineWriter, withWorkDir } from './staging';

export interface ExportInput {
  runId: string;
  model: string;
  datasetId: string;
  /** What the anonymize stage wrote: export reads only redacted rows. */
  anonymized: AnonymizeSummary;
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
    /** Rows whose subject withdrew consent or was erased between anonymize and export. */
    withdrawnDuringRun: number;
  };
  sources: Record<string, { train: number; validation: number }>;
  anonymization: { engineVersion: string; entities: Record<string, number> };
  /** Appended by each erasure that rewrote this dataset. */
  erasures?: { id: string; at: string; rowsRemoved: number }[];
}

export interface ExportSummary {
  datasetId: string;
  manifestKey: string;
  train: SplitSummary;
  validation: SplitSummary;
  counts: DatasetManifest['counts'];
}

const BATCH = 500;

/**
 * export: streams the anonymized rows into train/validation JSONL objects and a manifest written last, then
 * records every row's lineage (COPY) and marks the dataset ready in one transaction. Consent is checked again
 * per batch, so a withdrawal or erasure since anonymize is honoured; an erasure that lands while this commits
 * makes the lineage insert fail on its foreign key, and the retry exports without the erased rows. Keys derive
 * from the dataset id, so a retry after a crash rewrites the same objects and leaves exactly one dataset behind.
 * Memory is bounded by the dedup set (16 bytes a row); rows and lineage are staged on local disk.
 */
export function createExportActivities(deps: ActivityDeps) {
  return {
    async exportDataset(input: ExportInput): Promise<ExportSummary> {
      const log = activityLog(deps, { model: input.model, datasetId: input.datasetId });
      const dataset = await requireDataset(deps.db, input.datasetId);
      const workPrefix = `${dataset.prefix}work/`;
      if (dataset.status === 'ready') {
        await deps.store.deletePrefix(workPrefix); // a crash after the commit may have left it
        return summaryOf(dataset.manifest_key!, dataset.manifest as DatasetManifest);
      }
      if (dataset.status === 'abandoned') {
        throw permanentFailure(FailureType.DATASET_INVALID, `dataset ${input.datasetId} was abandoned`);
      }
      const model = await requireModel(deps.db, input.model);
      const config = parsePipelineConfig(model.config);

      return withWorkDir(deps, `export-${input.datasetId}`, async (work) => {
        const out = {
          train: lineWriter(path.join(work, 'train.jsonl')),
          validation: lineWriter(path.join(work, 'validation.jsonl')),
        };
        const lineage = lineWriter(path.join(work, 'lineage.tsv'));
        const a = input.anonymized;
        const counts: DatasetManifest['counts'] = {
          considered: a.considered,
          exported: 0,
          duplicatesDropped: 0,
          negativeFeedback: a.negativeFeedback,
          invalid: a.invalid,
          corrected: 0,
          withdrawnDuringRun: 0,
        };
        const sources: DatasetManifest['sources'] = {};
        const seen = new Set<string>();

        const flush = async (batch: AnonymizedLine[]) => {
          const still = await stillConsented(
            deps,
            batch.map((r) => r.id),
          );
          for (const r of batch) {
            if (!still.has(r.id)) {
              counts.withdrawnDuringRun++;
              continue;
            }
            const text = serializeRow({ messages: r.messages });
            const digest = createHash('sha256').update(text).digest();
            const dedupKey = digest.toString('latin1', 0, 16);
            if (seen.has(dedupKey)) {
              counts.duplicatesDropped++;
              continue;
            }
            seen.add(dedupKey);
            const split = splitOf(r.id, config.validationShare);
            await out[split].write(text);
            await lineage.write([dataset.id, r.id, split, String(out[split].lines), digest.toString('hex')].join('\t'));
            counts.exported++;
            if (r.corrected) counts.corrected++;
            (sources[r.source] ??= { train: 0, validation: 0 })[split]++;
          }
          heartbeat({ rows: counts.exported + counts.duplicatesDropped + counts.withdrawnDuringRun });
        };

        const digest = new DigestStream();
        try {
          const source = (await deps.store.get(a.key)).pipe(digest);
          let batch: AnonymizedLine[] = [];
          for await (const line of linesOf(source)) {
            if (line === '') continue;
            batch.push(JSON.parse(line) as AnonymizedLine);
            if (batch.length === BATCH) {
              await flush(batch);
              batch = [];
            }
          }
          if (batch.length) await flush(batch);
        } finally {
          await Promise.all([out.train.close(), out.validation.close(), lineage.close()]);
        }
        if (digest.result().sha256 !== a.sha256) {
          throw permanentFailure(
            FailureType.DATASET_INVALID,
            `${a.key} does not match the sha256 anonymize recorded (${digest.result().sha256} ≠ ${a.sha256})`,
          );
        }

        // Objects first, manifest last: a dataset without its manifest does not exist.
        const put = async (name: 'train' | 'validation'): Promise<SplitSummary> => {
          const info: BlobInfo = await deps.store.put(`${dataset.prefix}${name}.jsonl`, out[name].read(), {
            contentType: 'application/jsonl',
          });
          heartbeat({ uploaded: name });
          return { key: info.key, count: out[name].lines, bytes: info.size, sha256: info.sha256 };
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
            piiEngine: a.engineVersion,
          }),
          splits: { train: await put('train'), validation: await put('validation') },
          counts,
          sources,
          anonymization: { engineVersion: a.engineVersion, entities: a.entities },
        };
        const manifestKey = `${dataset.prefix}manifest.json`;
        await putManifest(deps.store, manifestKey, manifest);

        const committed = await commit(deps, dataset.id, manifestKey, manifest, lineage.read);
        if (!committed) {
          // The run was aborted while this attempt was uploading: take back what it wrote.
          await deps.store.deletePrefix(dataset.prefix);
          throw permanentFailure(FailureType.DATASET_INVALID, `dataset ${dataset.id} was abandoned during export`);
        }
        await deps.store.deletePrefix(workPrefix);
        log.info({ counts, manifestKey }, 'dataset exported');
        return summaryOf(manifestKey, manifest);
      });
    },
  };
}

/** The ids of `ids` whose interaction still exists and whose subject still consents to training. */
async function stillConsented(deps: ActivityDeps, ids: string[]): Promise<Set<string>> {
  const rows = await deps.db
    .selectFrom('interactions as i')
    .innerJoin('subjects as s', 's.id', 'i.subject_id')
    .select('i.id')
    .where('i.id', 'in', ids)
    .where('s.training_consent', '=', true)
    .execute();
  return new Set(rows.map((r) => r.id));
}

/**
 * Lineage and readiness in one transaction. The dataset row is locked first, which serialises with a
 * concurrent retry of this activity and with the run's cleanup. Returns false when the dataset was abandoned.
 */
async function commit(
  deps: ActivityDeps,
  datasetId: string,
  manifestKey: string,
  manifest: DatasetManifest,
  lineage: () => NodeJS.ReadableStream,
): Promise<boolean> {
  try {
    return await withPgTransaction(deps.db, async (client) => {
      const { rows } = await client.query<{ status: string }>('select status from datasets where id = $1 for update', [
        datasetId,
      ]);
      const status = rows[0]?.status;
      if (status !== 'collected') return status === 'ready';
      await client.query('delete from dataset_items where dataset_id = $1', [datasetId]);
      await pipeline(
        lineage(),
        client.query(copyFrom('copy dataset_items (dataset_id, interaction_id, split, line, row_sha256) from stdin')),
      );
      await client.query(
        `update datasets set status = 'ready', manifest_key = $2, manifest = $3, config_hash = $4, ready_at = now()
         where id = $1`,
        [datasetId, manifestKey, JSON.stringify(manifest), manifest.configHash],
      );
      return true;
    });
  } catch (err) {
    if ((err as { code?: string }).code === '23503') {
      throw retryableFailure(
        FailureType.DATASET_CONFLICT,
        `an interaction of dataset ${datasetId} was erased while it was being exported; exporting again`,
      );
    }
    throw err;
  }
}

/** A manifest as stored beside its dataset: readable JSON, written last. */
export function putManifest(store: BlobStore, key: string, manifest: DatasetManifest) {
  return store.put(key, JSON.stringify(manifest, null, 2) + '\n', { contentType: 'application/json' });
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
