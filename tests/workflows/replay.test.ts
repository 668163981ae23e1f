import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Worker } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';
import { temporalBinary } from '../../src/services/temporal-dev-server';
import { startPipeline } from '../../src/services/pipeline-client';
import { abortSignal } from '../../src/workflows/messages';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  seed,
  startRunHeldAtExport,
  startTestWorker,
  temporalClient,
  testLog,
  testOllama,
  tmpDir,
} from '../helpers/env';

const HISTORIES = path.resolve(import.meta.dirname, '../histories');

/**
 * Committed histories of real pipeline runs, replayed against today's workflow code: a change that would break
 * a run in flight (a non-deterministic change not guarded by patched()) fails here, in CI, before it ships.
 * Record new ones with `RECORD_HISTORIES=1 npx vitest run tests/workflows/replay` after an intended change.
 */
describe('replay of committed pipeline histories', () => {
  it('replays every committed history without a determinism error', async () => {
    const files = (await readdir(HISTORIES)).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(2);
    const histories = await Promise.all(
      files.map(async (f) => ({
        workflowId: f,
        history: JSON.parse(await readFile(path.join(HISTORIES, f), 'utf8')) as unknown,
      })),
    );
    const results = [];
    for await (const r of Worker.runReplayHistories(
      { workflowBundle: { codePath: inject('workflowBundlePath') }, replayName: 'ci' },
      histories,
    )) {
      results.push({ id: r.workflowId, error: r.error?.message ?? null });
    }
    expect(results).toEqual(files.map((f) => ({ id: f, error: null })));
  });

  it.runIf(process.env.RECORD_HISTORIES === '1')('records fresh histories (on demand)', async () => {
    const { db, drop } = await createTestDb();
    const { client, close } = await temporalClient();
    const deps = { db, store: await createTestStore(), log: testLog, ollama: testOllama(), tmpDir: await tmpDir() };
    const worker = await startTestWorker({ deps });
    try {
      const model = await createTestModel(db);
      await seed(
        db,
        model,
        [
          { subject: 'a', user: 'q', assistant: 'a' },
          { subject: 'b', user: 'q2', assistant: 'a2' },
        ],
        { a: true, b: false },
      );
      const ok = await startPipeline(client, db, {
        model: model.id,
        taskQueue: worker.taskQueue,
        trigger: 'test',
        requestedBy: 'recorder',
      });
      await ok.result();
      await writeFile(path.join(HISTORIES, 'pipeline-succeeded.json'), showHistory(ok.workflowId, ok.runId));

      // An aborted run: the abort arrives while export is held.
      await seed(db, model, [{ subject: 'a', user: 'q3', assistant: 'a3' }]);
      const { held, started: ab, handle: h } = await startRunHeldAtExport(client, db, deps, model.id);
      await h.signal(abortSignal, { reason: 'recording an aborted run', by: 'recorder' });
      await ab.result();
      held.release();
      await held.stop();
      await writeFile(path.join(HISTORIES, 'pipeline-aborted.json'), showHistory(ab.workflowId, ab.runId));
    } finally {
      await worker.stop();
      await close();
      await drop();
    }
  });
});

/** The history in the standard proto JSON form, as the Temporal CLI and UI export it. */
function showHistory(workflowId: string, runId: string): string {
  return execFileSync(
    temporalBinary(),
    ['workflow', 'show', '--address', inject('temporalAddress'), '-w', workflowId, '-r', runId, '-o', 'json'],
    {
      encoding: 'utf8',
    },
  );
}
