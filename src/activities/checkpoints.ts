import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../db/pool';
import { markCheckpointsDeleted, recordCheckpoint } from '../db/queries/checkpoints';
import type { Logger } from '../log';
import type { BlobStore } from '../storage/blob-store';
import { CorruptArtifact, downloadDir, MANIFEST, uploadDir, verifyLocalDir } from './artifacts';

/**
 * A run's checkpoints in the store: `runs/<runId>/checkpoints/step-00000042/` holding what the trainer wrote
 * (adapter, optimizer, scheduler, RNG, data position) and its manifest, uploaded last. The newest KEEP complete
 * ones are kept; the database's `checkpoints` table records each upload and each deletion.
 */

export const KEEP_CHECKPOINTS = 3;
const STEP_DIR = /^step-(\d{8})$/;

export const checkpointsPrefix = (runId: string) => `runs/${runId}/checkpoints/`;
export const stepDirName = (step: number) => `step-${String(step).padStart(8, '0')}`;
export const checkpointKey = (runId: string, step: number) => `${checkpointsPrefix(runId)}${stepDirName(step)}/`;

export function stepOf(dirName: string): number | null {
  const m = STEP_DIR.exec(dirName);
  return m ? Number(m[1]) : null;
}

interface StoredStep {
  step: number;
  key: string;
  complete: boolean;
}

/** Every step folder of the run in the store, newest first; complete means its manifest is there. */
export async function listStoredCheckpoints(store: BlobStore, runId: string): Promise<StoredStep[]> {
  const prefix = checkpointsPrefix(runId);
  const steps = new Map<number, StoredStep>();
  for await (const o of store.list(prefix)) {
    const [dir, file] = o.key.slice(prefix.length).split('/');
    const step = dir ? stepOf(dir) : null;
    if (step === null || !file) continue;
    const s = steps.get(step) ?? { step, key: `${prefix}${dir}/`, complete: false };
    if (file === MANIFEST) s.complete = true;
    steps.set(step, s);
  }
  return [...steps.values()].sort((a, b) => b.step - a.step);
}

/** Uploads one local checkpoint (files, then manifest) and records it. Idempotent. */
export async function uploadCheckpoint(
  deps: { db: Db; store: BlobStore },
  runId: string,
  localDir: string,
  signal?: AbortSignal,
): Promise<{ step: number; key: string; bytes: number }> {
  const step = stepOf(path.basename(localDir));
  if (step === null) throw new CorruptArtifact(`${localDir}: not a step-NNNNNNNN checkpoint folder`);
  const key = checkpointKey(runId, step);
  const up = await uploadDir(deps.store, localDir, key, signal);
  await recordCheckpoint(deps.db, { runId, step, key, manifestSha256: up.manifestSha256, bytes: up.bytes });
  return { step, key, bytes: up.bytes };
}

/**
 * Keeps the newest KEEP complete checkpoints and deletes the rest, and any folder without a manifest (an upload
 * a crash cut short; uploads of one run never overlap, the run lock sees to that). A deleted checkpoint loses its
 * manifest first, so a crash halfway leaves an incomplete folder, never a complete-looking one with files missing.
 * Safe to repeat and to interrupt: it never removes one of the newest KEEP complete checkpoints.
 */
export async function pruneCheckpoints(deps: { db: Db; store: BlobStore }, runId: string, keep = KEEP_CHECKPOINTS) {
  const stored = await listStoredCheckpoints(deps.store, runId);
  const complete = stored.filter((s) => s.complete);
  const newestKept = complete.slice(0, keep);
  const doomed = stored.filter((s) => !newestKept.includes(s));
  for (const s of doomed) {
    await deps.store.delete(s.key + MANIFEST);
    await deps.store.deletePrefix(s.key);
  }
  await markCheckpointsDeleted(
    deps.db,
    runId,
    doomed.map((s) => s.step),
  );
  return { kept: newestKept.map((s) => s.step), deleted: doomed.map((s) => s.step) };
}

export interface ResumePoint {
  step: number;
  dir: string;
  from: 'local' | 'store';
}

/**
 * The newest checkpoint that verifies, from the store (downloaded and checked file by file) or from this host's
 * own work folder (what a trainer that outlived its worker wrote last, on its way out). A corrupt one is logged
 * and skipped for the one before it.
 */
export async function findResumePoint(
  deps: { store: BlobStore; log: Logger },
  runId: string,
  localRoot: string,
  downloadRoot: string,
  hint: { step: number } | null,
): Promise<ResumePoint | null> {
  const local = (await readdir(localRoot).catch(() => [] as string[]))
    .map((name) => ({ step: stepOf(name), dir: path.join(localRoot, name) }))
    .filter((c): c is { step: number; dir: string } => c.step !== null);
  const stored = (await listStoredCheckpoints(deps.store, runId)).filter((s) => s.complete);
  const candidates = [
    ...local.map((c) => ({ ...c, from: 'local' as const })),
    ...stored.map((s) => ({ step: s.step, key: s.key, from: 'store' as const })),
  ].sort((a, b) => b.step - a.step || (a.from === 'local' ? -1 : 1));
  if (hint && !candidates.some((c) => c.step >= hint.step)) {
    deps.log.warn({ hint: hint.step }, 'the checkpoint named in the last heartbeat is gone from the store');
  }
  for (const c of candidates) {
    try {
      if (c.from === 'local') {
        await verifyLocalDir(c.dir);
        return { step: c.step, dir: c.dir, from: 'local' };
      }
      const dest = path.join(downloadRoot, stepDirName(c.step));
      await downloadDir(deps.store, c.key, dest);
      return { step: c.step, dir: dest, from: 'store' };
    } catch (err) {
      if (!(err instanceof CorruptArtifact)) throw err;
      deps.log.warn({ step: c.step, from: c.from, reason: err.message }, 'skipping a corrupt checkpoint');
    }
  }
  return null;
}
