import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { ErasureDataset } from '../db/database';
import { derivedObjectsOf } from '../db/queries/derived';
import { completeErasure, getErasure, rewriteDatasetForErasure } from '../db/queries/erasure';
import { BlobNotFoundError } from '../storage/blob-store';
import { putManifest } from './export';
import { activityLog, heartbeat, type ActivityDeps } from './deps';
import { linesOf, lineWriter, withWorkDir } from './staging';

export interface ErasureResult {
  erasureId: string;
  status: 'done';
  datasets: { datasetId: string; rowsRemoved: number; objects: ErasureDataset['objects'] }[];
}

const SPLITS = ['train', 'validation'] as const;

/**
 * The object half of an erasure: every stored dataset that held the subject's rows is rewritten without
 * them (same keys, atomic puts), its manifest gets the new sizes, counts and checksums, and the remaining rows'
 * lineage gets their new line numbers. One dataset at a time under its row lock, so two erasures (or an export
 * commit) never interleave on one dataset; a dataset already marked rewritten is skipped, and re-filtering a
 * rewritten object removes nothing, so a retry after a crash at any point converges.
 */
export function createErasureActivities(deps: ActivityDeps) {
  return {
    async rewriteErasedDatasets(input: { erasureId: string }): Promise<ErasureResult> {
      const log = activityLog(deps, { erasureId: input.erasureId });
      const erasure = await getErasure(deps.db, input.erasureId);
      if (!erasure) throw new Error(`erasure ${input.erasureId} does not exist`);
      for (const target of erasure.datasets) {
        if (target.rewritten) continue;
        await rewriteOne(deps, erasure.id, target);
        heartbeat({ datasetId: target.datasetId });
      }
      const datasets = await completeErasure(deps.db, erasure.id);
      log.info({ datasets: datasets.length }, 'erasure complete');
      return {
        erasureId: erasure.id,
        status: 'done',
        datasets: datasets.map((d) => ({
          datasetId: d.datasetId,
          rowsRemoved: d.rows.length,
          objects: d.objects,
        })),
      };
    },
  };
}

async function rewriteOne(deps: ActivityDeps, erasureId: string, target: ErasureDataset): Promise<void> {
  await rewriteDatasetForErasure(deps.db, erasureId, target.datasetId, async (locked) => {
    const ds = locked.dataset;
    const objects: ErasureDataset['objects'] = [];
    const remove = new Set(target.rows.map((r) => r.rowSha256));
    if (ds?.status === 'ready' && ds.manifest) {
      const manifest = ds.manifest;
      await withWorkDir(deps, `erase-${target.datasetId}`, async (dir) => {
        for (const split of SPLITS) {
          const summary = manifest.splits[split];
          const out = lineWriter(path.join(dir, `${split}.jsonl`));
          const moved: { sha: string; line: number }[] = [];
          let original = 0;
          try {
            for await (const line of linesOf(await deps.store.get(summary.key))) {
              if (line === '') continue;
              original++;
              const sha = createHash('sha256').update(line).digest('hex');
              if (remove.has(sha)) continue;
              await out.write(line);
              if (out.lines !== original) moved.push({ sha, line: out.lines });
            }
          } finally {
            await out.close();
          }
          const info = await deps.store.put(summary.key, out.read(), { contentType: 'application/jsonl' });
          manifest.splits[split] = { key: info.key, count: out.lines, bytes: info.size, sha256: info.sha256 };
          objects.push({ key: info.key, sha256: info.sha256, bytes: info.size });
          await locked.renumber(split, moved);
        }
      });
      // Accounting comes from the erasure record, applied once: the manifest in the database changes only in
      // the transaction that marks this dataset rewritten.
      for (const r of target.rows) {
        const s = manifest.sources[r.source];
        if (s) s[r.split] = Math.max(0, s[r.split] - 1);
      }
      manifest.counts.exported = manifest.splits.train.count + manifest.splits.validation.count;
      manifest.erasures = [
        ...(manifest.erasures ?? []),
        { id: erasureId, at: new Date().toISOString(), rowsRemoved: target.rows.length },
      ];
      await putManifest(deps.store, ds.manifestKey, manifest);
      await locked.saveManifest(manifest);
    }
    // Every object a stage wrote from this dataset's rows (evaluation pairs, verdicts, parity cases…), without the
    // subject's lines. One written after this transaction leaves them out itself (activities/derived.ts).
    for (const derived of await derivedObjectsOf(deps.db, target.datasetId)) {
      const info = await withWorkDir(deps, `erase-derived-${target.datasetId}`, (dir) =>
        filterDerived(deps, derived.key, remove, path.join(dir, 'object.jsonl')),
      );
      if (info) objects.push(info);
    }
    // An abandoned dataset's objects are already gone; a missing one has nothing to rewrite.
    return objects;
  });
}

/**
 * Rewrites a derived object without the lines of removed rows (same key, atomic put). A line that names no row
 * cannot be told apart and goes too. Null when the object was never written (registered, then its stage failed).
 */
async function filterDerived(
  deps: ActivityDeps,
  key: string,
  remove: Set<string>,
  file: string,
): Promise<ErasureDataset['objects'][number] | null> {
  let source: Readable;
  try {
    source = await deps.store.get(key);
  } catch (err) {
    if (err instanceof BlobNotFoundError) return null;
    throw err;
  }
  const out = lineWriter(file);
  try {
    for await (const line of linesOf(source)) {
      if (line === '') continue;
      let row: unknown;
      try {
        row = (JSON.parse(line) as { row?: unknown }).row;
      } catch {
        row = undefined;
      }
      if (typeof row !== 'string' || remove.has(row)) continue;
      await out.write(line);
    }
  } finally {
    await out.close();
  }
  const info = await deps.store.put(key, out.read(), { contentType: 'application/x-ndjson' });
  return { key: info.key, sha256: info.sha256, bytes: info.size };
}
