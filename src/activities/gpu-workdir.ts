import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../db/pool';
import { runningRunIds } from '../db/queries/runs';
import type { Logger } from '../log';

/** The folders of the GPU host's work folder that hold a run's local copies: `<kind>/<run id>/`. */
const RUN_FOLDERS = ['runs', 'eval', 'register'] as const;

/**
 * The GPU host keeps local copies of a run's data (the dataset's splits, prompts, generations) only while the run
 * is in progress: each activity removes its folder when it ends, and this removes what an activity that died (with
 * its worker) left behind, once its run has ended. An erasure cannot reach into every GPU host; this bounds how long
 * a copy can live there. Runs still in progress keep theirs: their next attempt resumes from it.
 */
export async function pruneFinishedRunFolders(workDir: string, db: Db, log: Logger): Promise<string[]> {
  const found: { dir: string; runId: string }[] = [];
  for (const kind of RUN_FOLDERS) {
    for (const runId of await readdir(path.join(workDir, kind)).catch(() => [] as string[])) {
      found.push({ dir: path.join(workDir, kind, runId), runId });
    }
  }
  if (found.length === 0) return [];
  const running = await runningRunIds(
    db,
    found.map((f) => f.runId),
  );
  const removed: string[] = [];
  for (const f of found) {
    if (running.has(f.runId)) continue;
    await rm(f.dir, { recursive: true, force: true });
    removed.push(f.dir);
  }
  if (removed.length) log.info({ removed }, 'removed the local copies of ended runs from the GPU work folder');
  return removed;
}
