import path from 'node:path';
import { ExportRows } from '../dataset/export-rows';
import type { DatasetManifest, SplitSummary } from '../dataset/manifest';
import { exportConfigHash } from '../dataset/rows';
import { commitExport, LineageConflict, lineageLine } from '../db/queries/datasets';
import { stillConsented } from '../db/queries/interactions';
import { parsePipelineConfig } from '../domain/model-config';
import { DigestStream, type BlobInfo, type BlobStore } from '../storage/blob-store';
import type { AnonymizedLine, AnonymizeSummary } from './anonymize';
import { activityLog, heartbeat, type ActivityDeps } from './deps';
import { FailureType, permanentFailure, retryableFailure } from './failures';
import { requireDataset, requireModel } from './lookups';
import { linesOf, lineWriter, withWorkDir } from './staging';

export type { DatasetManifest, SplitSummary } from '../dataset/manifest';

export interface ExportInput {
  runId: string;
  model: string;
  datasetId: string;
  /** What the anonymize stage wrote: export reads only redacted rows. */
  anonymized: AnonymizeSummary;
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
 * Memory is bounded by export-rows.ts's indexes (about 200 bytes a row); rows and lineage are staged on local disk.
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
        const rows = new ExportRows(config.validationShare, a, config.dedup);

        const flush = async (batch: AnonymizedLine[]) => {
          const still = await stillConsented(
            deps.db,
            batch.map((r) => r.id),
          );
          for (const r of batch) {
            const row = rows.add(r, still.has(r.id));
            if (!row) continue;
            await out[row.split].write(row.text);
            await lineage.write(
              lineageLine({
                datasetId: dataset.id,
                interactionId: r.id,
                split: row.split,
                line: row.line,
                rowSha256: row.rowSha256,
              }),
            );
          }
          heartbeat({ rows: rows.decided });
        };

        // Two passes over the rows: the validation split's first, then train's, so that no train row is kept as a
        // near copy of a validation row that comes after it (export-rows.ts). Each pass checks the bytes it read.
        const pass = async (split: 'train' | 'validation') => {
          const digest = new DigestStream();
          const source = (await deps.store.get(a.key)).pipe(digest);
          let batch: AnonymizedLine[] = [];
          for await (const line of linesOf(source)) {
            if (line === '') continue;
            const r = JSON.parse(line) as AnonymizedLine;
            if (rows.splitFor(r) !== split) continue;
            batch.push(r);
            if (batch.length === BATCH) {
              await flush(batch);
              batch = [];
            }
          }
          if (batch.length) await flush(batch);
          if (digest.result().sha256 !== a.sha256) {
            throw permanentFailure(
              FailureType.DATASET_INVALID,
              `${a.key} does not match the sha256 anonymize recorded (${digest.result().sha256} ≠ ${a.sha256})`,
            );
          }
        };
        try {
          if (config.validationShare > 0) await pass('validation');
          await pass('train');
        } finally {
          await Promise.all([out.train.close(), out.validation.close(), lineage.close()]);
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
            dedup: config.dedup,
            format: 'chat-messages',
            piiEngine: a.engineVersion,
          }),
          splits: { train: await put('train'), validation: await put('validation') },
          counts: rows.counts,
          sources: rows.sources,
          anonymization: { engineVersion: a.engineVersion, entities: a.entities },
        };
        const manifestKey = `${dataset.prefix}manifest.json`;
        await putManifest(deps.store, manifestKey, manifest);

        const committed = await commit(deps, { datasetId: dataset.id, manifestKey, manifest, lineage: lineage.read });
        if (!committed) {
          // The run was aborted while this attempt was uploading: take back what it wrote.
          await deps.store.deletePrefix(dataset.prefix);
          throw permanentFailure(FailureType.DATASET_INVALID, `dataset ${dataset.id} was abandoned during export`);
        }
        await deps.store.deletePrefix(workPrefix);
        log.info({ counts: rows.counts, manifestKey }, 'dataset exported');
        return summaryOf(manifestKey, manifest);
      });
    },
  };
}

/** Lineage and readiness, committed together; false when the dataset was abandoned meanwhile. */
async function commit(deps: ActivityDeps, input: Parameters<typeof commitExport>[1]): Promise<boolean> {
  try {
    return await commitExport(deps.db, input);
  } catch (err) {
    if (err instanceof LineageConflict) throw retryableFailure(FailureType.DATASET_CONFLICT, err.message);
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
