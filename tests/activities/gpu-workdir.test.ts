import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneFinishedRunFolders } from '../../src/activities/gpu-workdir';
import type { Db } from '../../src/db/pool';
import { createTestDb, createTestModel, testLog, tmpDir, uid } from '../helpers/env';

/** The GPU host's local copies of a run's data live only as long as the run: what a dead activity left is pruned. */

let db: Db;
let drop: () => Promise<void>;
beforeAll(async () => ({ db, drop } = await createTestDb()));
afterAll(async () => drop?.());

describe('pruneFinishedRunFolders', () => {
  it('removes the folders of ended and unknown runs and keeps those of runs in progress', async () => {
    // Arrange
    const model = await createTestModel(db);
    const [running, ended, unknown] = [uid('run-'), uid('run-'), uid('run-')];
    for (const [id, status] of [
      [running, 'running'],
      [ended, 'failed'],
    ] as const) {
      await db
        .insertInto('runs')
        .values({ id, workflow_id: `pipeline:${model.id}`, model_id: model.id, status, trigger: 'test' })
        .execute();
    }
    const work = await tmpDir('gpu-work-');
    for (const kind of ['runs', 'eval', 'register']) {
      for (const id of [running, ended, unknown]) {
        await mkdir(path.join(work, kind, id, 'data'), { recursive: true });
        await writeFile(path.join(work, kind, id, 'data', 'validation.jsonl'), '{"messages":[]}\n');
      }
    }

    // Act
    const removed = await pruneFinishedRunFolders(work, db, testLog);

    // Assert
    expect(removed).toHaveLength(6);
    for (const kind of ['runs', 'eval', 'register']) expect(await readdir(path.join(work, kind))).toEqual([running]);
  });

  it('does nothing on an empty or missing work folder', async () => {
    expect(await pruneFinishedRunFolders(path.join(await tmpDir(), 'none'), db, testLog)).toEqual([]);
  });
});
