import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptArtifact, downloadDir } from '../../src/activities/artifacts';
import {
  checkpointKey,
  findResumePoint,
  listStoredCheckpoints,
  pruneCheckpoints,
  uploadCheckpoint,
} from '../../src/activities/checkpoints';
import { withRunLock } from '../../src/activities/train';
import type { Db } from '../../src/db/pool';
import { FileBlobStore } from '../../src/storage';
import { createTestDb, createTestModel, testLog, tmpDir } from '../helpers/env';

// Checkpoints in a real store and a real database: upload order, pruning to the newest three, falling back past a
// corrupt one, and the run lock.

/** A checkpoint folder as the trainer writes it: files, then a manifest of their sizes and sha256. */
async function fakeCheckpoint(root: string, step: number) {
  const dir = path.join(root, `step-${String(step).padStart(8, '0')}`);
  await mkdir(dir, { recursive: true });
  const files: Record<string, { size: number; sha256: string }> = {};
  for (const [name, body] of [
    ['adapter_model.safetensors', `weights at ${step} `.repeat(50)],
    ['optimizer.pt', `optimizer at ${step}`],
    ['trainer_state.json', JSON.stringify({ step })],
  ] as const) {
    await writeFile(path.join(dir, name), body);
    files[name] = { size: Buffer.byteLength(body), sha256: createHash('sha256').update(body).digest('hex') };
  }
  await writeFile(path.join(dir, 'manifest.json'), JSON.stringify({ format: 'test', version: 1, step, files }));
  return dir;
}

describe('checkpoints in the store', () => {
  let db: Db;
  let drop: () => Promise<void>;
  let runId: string;
  let modelId: string;
  /** A run row of its own for each test (checkpoints reference their run). */
  const newRun = async (id: string) => {
    await db
      .insertInto('runs')
      .values({
        id,
        workflow_id: 'w',
        model_id: modelId,
        status: 'running',
        trigger: 'test',
        requested_by: null,
        request_id: null,
      })
      .execute();
    return id;
  };
  beforeAll(async () => {
    ({ db, drop } = await createTestDb());
    modelId = (await createTestModel(db)).id;
    runId = await newRun(`run-${Date.now()}`);
  });
  afterAll(() => drop());

  it('keeps the newest three complete checkpoints, deletes older ones and upload leftovers, and is idempotent', async () => {
    const store = new FileBlobStore(await tmpDir('store-'));
    const local = await tmpDir('ckpt-');
    // Killed between uploads and prunes: five complete checkpoints stored, none pruned yet …
    for (const step of [10, 20, 30, 40, 50])
      await uploadCheckpoint({ db, store }, runId, await fakeCheckpoint(local, step));
    // … and an upload cut short before its manifest.
    await store.put(`${checkpointKey(runId, 60)}adapter_model.safetensors`, 'half');

    const first = await pruneCheckpoints({ db, store }, runId);
    expect(first.kept).toEqual([50, 40, 30]);
    expect(first.deleted.sort()).toEqual([10, 20, 60]);
    const second = await pruneCheckpoints({ db, store }, runId);
    expect(second).toEqual({ kept: [50, 40, 30], deleted: [] });

    const stored = await listStoredCheckpoints(store, runId);
    expect(stored.map((s) => [s.step, s.complete])).toEqual([
      [50, true],
      [40, true],
      [30, true],
    ]);
    const rows = await db
      .selectFrom('checkpoints')
      .select(['step', 'deleted_at'])
      .where('run_id', '=', runId)
      .orderBy('step')
      .execute();
    expect(rows.map((r) => [r.step, r.deleted_at !== null])).toEqual([
      [10, true],
      [20, true],
      [30, false],
      [40, false],
      [50, false],
    ]);
  });

  it('resumes from the newest checkpoint that verifies: a corrupt newest one in the store falls back to the one before', async () => {
    const store = new FileBlobStore(await tmpDir('store-'));
    const local = await tmpDir('ckpt-');
    const run = await newRun(`${runId}-b`);
    for (const step of [5, 10]) await uploadCheckpoint({ db, store }, run, await fakeCheckpoint(local, step));
    // A bit flipped in storage.
    const key = `${checkpointKey(run, 10)}adapter_model.safetensors`;
    const bytes = await readFile(path.join(store.root, 'objects', key));
    bytes[3] = bytes[3]! ^ 0xff;
    await writeFile(path.join(store.root, 'objects', key), bytes);

    await expect(downloadDir(store, checkpointKey(run, 10), path.join(await tmpDir(), 'x'))).rejects.toBeInstanceOf(
      CorruptArtifact,
    );
    const point = await findResumePoint({ store, log: testLog }, run, await tmpDir('empty-'), await tmpDir('dl-'), {
      step: 10,
    });
    expect(point).toMatchObject({ step: 5, from: 'store' });
    expect(JSON.parse(await readFile(path.join(point!.dir, 'trainer_state.json'), 'utf8'))).toEqual({ step: 5 });
  });

  it('prefers a newer complete checkpoint on this host over the store, and ignores a local one without a manifest', async () => {
    const store = new FileBlobStore(await tmpDir('store-'));
    const local = await tmpDir('ckpt-');
    const run = await newRun(`${runId}-c`);
    await uploadCheckpoint({ db, store }, run, await fakeCheckpoint(local, 8));
    await fakeCheckpoint(local, 9); // written on the way out by a trainer whose worker died; never uploaded
    const torn = await fakeCheckpoint(local, 10);
    await writeFile(path.join(torn, 'optimizer.pt'), 'torn write');
    const point = await findResumePoint({ store, log: testLog }, run, local, await tmpDir('dl-'), null);
    expect(point).toMatchObject({ step: 9, from: 'local' });
  });

  it('lets one trainer at a time hold a run', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const first = withRunLock(db, 'train:lock-test', () => held);
    await new Promise((r) => setTimeout(r, 200));
    await expect(withRunLock(db, 'train:lock-test', async () => 'twin')).rejects.toThrow(/held by another trainer/);
    release();
    await first;
    await expect(withRunLock(db, 'train:lock-test', async () => 'next')).resolves.toBe('next');
  });
});
