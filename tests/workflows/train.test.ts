import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listStoredCheckpoints } from '../../src/activities/checkpoints';
import { trainLog } from '../../src/db/queries/train-log';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import { REPO_ROOT } from '../../src/config';
import { startPipeline } from '../../src/temporal/pipeline-client';
import { TINY_BASE_MODEL } from '../../src/embedded/base-models';
import { FileBlobStore } from '../../src/storage';
import type { PipelineResult } from '../../src/workflows/messages';
import {
  coachingRows,
  createTestDb,
  createTestModel,
  seed,
  startTestApi,
  startTestWorker,
  startTestWorkers,
  temporalClient,
  testLog,
  testOllama,
  testTrainer,
  tmpDir,
} from '../helpers/env';

// The train and evaluate stages for real: the Python trainer on the tiny Llama model, on CPU, driven by the GPU
// worker through the Temporal dev server, checkpoints in a real store.

const CONSENT = { u0: true, u1: true, u2: true, u3: true, u4: true };

describe('train and evaluate in the pipeline', () => {
  let db: Db;
  let dbUrl: string;
  let drop: () => Promise<void>;
  let client: Awaited<ReturnType<typeof temporalClient>>;
  beforeAll(async () => {
    ({ db, url: dbUrl, drop } = await createTestDb());
    client = await temporalClient();
  });
  afterAll(async () => {
    await client.close();
    await drop();
  });

  it('runs export → train → evaluate with the tiny model: a candidate version with its adapter, lower held-out loss than the base, at most three checkpoints', async () => {
    const store = new FileBlobStore(await tmpDir('store-'));
    const deps = { db, store, log: testLog, ollama: testOllama(), tmpDir: await tmpDir() };
    const workers = await startTestWorkers(deps);
    try {
      const model = await createTestModel(db, {
        baseModel: TINY_BASE_MODEL,
        config: {
          validationShare: 0.2,
          stages: { train: true, evaluate: true },
          training: {
            maxSteps: 12,
            epochs: 3,
            effectiveBatchSize: 4,
            microBatchSize: 2,
            maxLength: 256,
            learningRate: 3e-3,
            checkpointEverySteps: 2,
          },
        },
      });
      await seed(db, model, coachingRows(48), CONSENT);

      const run = await startPipeline(client.client, db, {
        model: model.id,
        taskQueue: workers.taskQueue,
        gpuTaskQueue: workers.gpuTaskQueue,
        trigger: 'test',
        requestedBy: 'test',
      });
      const result: PipelineResult = await run.result();

      expect(result.status).toBe('succeeded');
      const stage = (name: string) => result.stages.find((s) => s.name === name)!;
      expect(stage('train').status).toBe('succeeded');
      expect(stage('evaluate').status).toBe('succeeded');
      expect(result.version).not.toBeNull();

      const version = await db
        .selectFrom('model_versions')
        .selectAll()
        .where('id', '=', result.version!.id)
        .executeTakeFirstOrThrow();
      expect(version.status).toBe('candidate');
      expect(version.run_id).toBe(run.runId);
      expect(version.adapter_key).toBe(result.version!.adapterKey);
      const adapterFiles = [];
      for await (const o of store.list(version.adapter_key!)) adapterFiles.push(path.basename(o.key));
      expect(adapterFiles).toEqual(
        expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json', 'manifest.json']),
      );

      const evaluation = stage('evaluate').summary as {
        baselineName: string;
        candidate: { loss: number; perplexity: number };
        baseline: { loss: number };
        pairsKey: string | null;
      };
      expect(evaluation.baselineName).toBe('base');
      expect(evaluation.candidate.loss).toBeLessThan(evaluation.baseline.loss);
      expect(evaluation.candidate.perplexity).toBeCloseTo(Math.exp(evaluation.candidate.loss), 3);
      expect(evaluation.pairsKey).not.toBeNull();

      // The training curve: every step, once, as the trainer logged it.
      const steps = (stage('train').summary as { steps: number }).steps;
      const curve = await trainLog(db, run.runId);
      expect(curve.train.map((p) => p.step)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
      expect(curve.train.every((p) => p.loss! > 0 && p.tokensPerS! > 0)).toBe(true);

      const stored = await listStoredCheckpoints(store, run.runId);
      expect(stored.filter((s) => s.complete).length).toBeLessThanOrEqual(3);
      expect(stored.every((s) => s.complete)).toBe(true);
      const rows = await db.selectFrom('checkpoints').selectAll().where('run_id', '=', run.runId).execute();
      expect(rows.length).toBeGreaterThan(3); // 12 steps / 2 = 6 uploads (plus the final one) …
      expect(rows.filter((r) => r.deleted_at === null).length).toBeLessThanOrEqual(3); // … of which three remain
    } finally {
      await workers.stop();
    }
  });

  it('cancelling the run mid-training reaches the trainer as SIGTERM: it checkpoints, the checkpoint is uploaded, the run ends cancelled', async () => {
    const store = new FileBlobStore(await tmpDir('store-'));
    const deps = { db, store, log: testLog, ollama: testOllama(), tmpDir: await tmpDir() };
    const workers = await startTestWorkers(deps);
    try {
      const model = await createTestModel(db, {
        baseModel: TINY_BASE_MODEL,
        config: {
          validationShare: 0.1,
          stages: { train: true, evaluate: false },
          // No step or timer checkpoint can happen before the cancellation: only the SIGTERM one.
          training: {
            maxSteps: 400,
            epochs: 100,
            effectiveBatchSize: 4,
            microBatchSize: 2,
            maxLength: 256,
            checkpointEverySteps: 10_000,
            checkpointEveryMinutes: 600,
          },
        },
      });
      await seed(db, model, coachingRows(32), CONSENT);
      const run = await startPipeline(client.client, db, {
        model: model.id,
        taskQueue: workers.taskQueue,
        gpuTaskQueue: workers.gpuTaskQueue,
        trigger: 'test',
        requestedBy: 'test',
      });
      const handle = client.client.workflow.getHandle(run.workflowId, run.runId);
      // Training, as its heartbeats show in GET /v1/runs/:id (and the Temporal UI).
      const api = await startTestApi({ db, temporal: client.client, store, taskQueue: workers.taskQueue });
      const { key } = await createApiKey(db, { name: 'ops', role: 'operator', appId: null, models: [] });
      let training: Record<string, unknown> | undefined;
      try {
        await expect
          .poll(
            async () => {
              training = (await api.call('GET', `/v1/runs/${run.runId}`, key)).json.run.training;
              return (training?.step as number | undefined) ?? 0;
            },
            { timeout: 120_000, interval: 500 },
          )
          .toBeGreaterThanOrEqual(2);
      } finally {
        await api.close();
      }
      expect(training).toMatchObject({
        totalSteps: expect.any(Number),
        loss: expect.any(Number),
        tokensPerS: expect.any(Number),
        attempt: 1,
        lastHeartbeatAt: expect.stringMatching(/^\d{4}-/),
      });
      await handle.cancel();
      await expect(run.result()).rejects.toThrow();

      const rows = await db.selectFrom('checkpoints').select('step').where('run_id', '=', run.runId).execute();
      expect(rows).toHaveLength(1);
      expect(rows[0]!.step).toBeGreaterThanOrEqual(2);
      const stored = await listStoredCheckpoints(store, run.runId);
      expect(stored).toEqual([expect.objectContaining({ step: rows[0]!.step, complete: true })]);
      const status = await db.selectFrom('runs').select('status').where('id', '=', run.runId).executeTakeFirstOrThrow();
      expect(status.status).toBe('cancelled');
    } finally {
      await workers.stop();
    }
  });

  it('survives kill -9 of the GPU worker mid-training: a new worker resumes from the last checkpoint, steps trained < 1.5 × planned, at most three checkpoints stored, no orphan trainer', async () => {
    const storeDir = await tmpDir('store-');
    const store = new FileBlobStore(storeDir);
    const deps = { db, store, log: testLog, ollama: testOllama(), tmpDir: await tmpDir() };
    const cpu = await startTestWorker({ deps });
    const gpuQueue = `gpu-kill-${Date.now()}`;
    const trainer = await testTrainer();
    const planned = 40;
    const model = await createTestModel(db, {
      baseModel: TINY_BASE_MODEL,
      config: {
        validationShare: 0.1,
        stages: { train: true, evaluate: false },
        training: {
          maxSteps: planned,
          epochs: 50,
          effectiveBatchSize: 8,
          microBatchSize: 4,
          maxLength: 512,
          checkpointEverySteps: 5,
        },
      },
    });
    await seed(db, model, coachingRows(64), CONSENT);

    const env = {
      ...process.env,
      DATABASE_URL: dbUrl,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TUNELOOP_STORE: `file://${storeDir}`,
      TUNELOOP_GPU_TASK_QUEUE: gpuQueue,
      TUNELOOP_MODELS_DIR: trainer.modelsDir,
      TUNELOOP_GPU_WORK_DIR: trainer.workDir,
      TUNELOOP_TRAINER_THREADS: '1',
      LOG_LEVEL: 'debug',
    };
    const logs: Record<string, unknown>[] = [];
    const startWorker = (name: string) => {
      const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/tuneloop'), 'worker', '--gpu'], {
        cwd: REPO_ROOT,
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      // pino writes the worker's log to stderr
      createInterface({ input: child.stderr! }).on('line', (line) => {
        try {
          logs.push({ worker: name, ...(JSON.parse(line) as Record<string, unknown>) });
        } catch {
          // not a log line
        }
      });
      return child;
    };
    let first: ChildProcess | null = startWorker('first');
    let second: ChildProcess | null = null;
    try {
      const run = await startPipeline(client.client, db, {
        model: model.id,
        taskQueue: cpu.taskQueue,
        gpuTaskQueue: gpuQueue,
        // The dead worker's attempt is given up after this much silence; production waits two minutes.
        gpuHeartbeatTimeoutS: 20,
        trigger: 'test',
        requestedBy: 'test',
      });
      // Mid-training: a checkpoint is in the store and the trainer has gone on past it.
      await expect
        .poll(
          async () =>
            (await db.selectFrom('checkpoints').select('step').where('run_id', '=', run.runId).execute()).length,
          { timeout: 120_000, interval: 200 },
        )
        .toBeGreaterThan(0);
      const trainerPid = Number(await readFile(path.join(trainer.workDir, 'runs', run.runId, 'trainer.pid'), 'utf8'));
      first.kill('SIGKILL');
      await new Promise((r) => first!.once('exit', r));
      first = null;

      // The orphan checkpoints and exits by itself (parent-death signal / closed stdin).
      await expect.poll(() => alive(trainerPid), { timeout: 60_000, interval: 200 }).toBe(false);

      second = startWorker('second');
      const result: PipelineResult = await run.result();
      expect(result.status).toBe('succeeded');
      const train = result.stages.find((s) => s.name === 'train')!;
      expect(train.status).toBe('succeeded');
      const summary = train.summary as { steps: number; resumedFrom: number | null; attempts: number };
      expect(summary.steps).toBe(planned);
      expect(summary.attempts).toBeGreaterThanOrEqual(2);
      expect(summary.resumedFrom).toBeGreaterThan(0);

      // Steps actually trained, from both workers' logs: every attempt from where it started to where it got.
      const attempts = new Map<string, { start: number; last: number }>();
      for (const l of logs) {
        const key = `${String(l.worker)}:${String(l.attempt)}`;
        if (l.msg === 'trainer started') attempts.set(key, { start: Number(l.step), last: Number(l.step) });
        if (l.msg === 'trainer progress') {
          const a = attempts.get(key);
          if (a) a.last = Math.max(a.last, Number(l.step));
        }
      }
      // The orphaned trainer went on alone between the kill and its signal checkpoint, with nobody to log its steps:
      // a later attempt that starts past where the previous one was last seen counts that gap as trained too.
      let trained = 0;
      let seenUpTo = 0;
      for (const a of attempts.values()) {
        trained += Math.max(0, a.start - seenUpTo) + (a.last - a.start);
        seenUpTo = a.last;
      }
      expect(attempts.size).toBeGreaterThanOrEqual(2);
      expect(trained).toBeGreaterThanOrEqual(planned);
      expect(trained).toBeLessThan(1.5 * planned);

      // The training curve: every step from the resume point on, once (a redone step replaced, not repeated).
      // Steps the orphan trained alone, with nobody reading its output, may be missing before it.
      const curve = (await trainLog(db, run.runId)).train.map((p) => p.step);
      expect(new Set(curve).size).toBe(curve.length);
      expect(curve.filter((step) => step > summary.resumedFrom!)).toEqual(
        Array.from({ length: planned - summary.resumedFrom! }, (_, i) => summary.resumedFrom! + i + 1),
      );
      expect(curve.filter((step) => step <= summary.resumedFrom!).length).toBeGreaterThan(0);

      const stored = await listStoredCheckpoints(store, run.runId);
      expect(stored.filter((s) => s.complete).length).toBeLessThanOrEqual(3);
      expect(stored.every((s) => s.complete)).toBe(true);
    } finally {
      first?.kill('SIGKILL');
      if (second) {
        second.kill('SIGTERM');
        await new Promise((r) => second!.once('exit', r));
      }
      await cpu.stop();
    }
  });
});

/** Alive and not a zombie (in a container nobody may reap the orphan once it exits). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
