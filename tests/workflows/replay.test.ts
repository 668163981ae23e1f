import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Worker } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';
import { temporalBinary } from '../../src/embedded/temporal-dev-server';
import { startPipeline } from '../../src/temporal/pipeline-client';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  seed,
  startTestWorkers,
  temporalClient,
  testLog,
  testOllama,
  tmpDir,
} from '../helpers/env';
import { TINY_BASE_MODEL } from '../../src/embedded/base-models';
import { ALL_STAGES } from '../helpers/stages';

const HISTORIES = path.resolve(import.meta.dirname, '../histories');

/**
 * Committed histories of real pipeline runs, replayed against today's workflow code: a change that would break
 * a run in flight (a non-deterministic change not guarded by patched()) fails here, in CI, before it ships.
 * Record the whole-loop history again with `RECORD_HISTORIES=1 npx vitest run tests/workflows/replay` after an
 * intended change (and a patched() branch for runs in flight).
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

  // pipeline-succeeded.json and pipeline-aborted.json were recorded by the code before the train stage existed and are
  // kept as they are: they prove that runs started by that code still replay. This records the whole loop as the
  // code runs it now (a second run, so that the canary has a production version to be compared with).
  it.runIf(process.env.RECORD_HISTORIES === '1')(
    'records the history of a run through every stage (on demand)',
    async () => {
      const { db, drop } = await createTestDb();
      const { client, close } = await temporalClient();
      const deps = {
        db,
        store: await createTestStore(),
        log: testLog,
        ollama: testOllama(),
        tmpDir: await tmpDir(),
      };
      const workers = await startTestWorkers(deps);
      try {
        const model = await createTestModel(db, {
          baseModel: TINY_BASE_MODEL,
          config: {
            validationShare: 0.2,
            stages: ALL_STAGES,
            training: { maxSteps: 4, effectiveBatchSize: 4, microBatchSize: 2, maxLength: 256, learningRate: 3e-3 },
            thresholds: { maxLossRegression: 10 },
            canary: { steps: [50, 100], holdSeconds: 1, minCalls: 0 },
          },
        });
        const rows = (n: number, offset: number) =>
          Array.from({ length: n }, (_, i) => ({
            subject: `s${i % 3}`,
            user: `How many squats on day ${i + offset}?`,
            assistant: `Do 3 sets of 10 squats on day ${i + offset}.`,
          }));
        const consent = { s0: true, s1: true, s2: true };
        let served = null;
        for (const offset of [0, 100]) {
          await seed(db, model, rows(20, offset), consent);
          served = await startPipeline(client, db, {
            model: model.id,
            taskQueue: workers.taskQueue,
            gpuTaskQueue: workers.gpuTaskQueue,
            trigger: 'test',
            requestedBy: 'recorder',
          });
          expect((await served.result()).status).toBe('succeeded');
        }
        await writeFile(path.join(HISTORIES, 'pipeline-served.json'), showHistory(served!.workflowId, served!.runId));
      } finally {
        await workers.stop();
        await close();
        await drop();
      }
    },
    600_000,
  );
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
