import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import type { Config } from '../config';
import { withAdvisoryLock } from '../db/locks';
import type { Db } from '../db/pool';
import { getRun } from '../db/queries/runs';
import { insertCandidateVersion, productionVersion } from '../db/queries/registry';
import { recordTrainLog, type TrainLogPoint } from '../db/queries/train-log';
import { adapterFitsBase } from '../domain/base-fit';
import { parsePipelineConfig, type TrainingConfig } from '../domain/model-config';
import { versionName } from '../domain/versions';
import type { Logger } from '../log';
import { downloadDir, ensureLocalCopy, uploadDir, writeManifestFor } from './artifacts';
import { findResumePoint, pruneCheckpoints, uploadCheckpoint } from './checkpoints';
import type { ActivityDeps } from './deps';
import { activityLog } from './deps';
import type { DatasetManifest, SplitSummary } from '../dataset/manifest';
import { FailureType, permanentFailure, retryableFailure } from './failures';
import { requireModel } from './lookups';
import { INTERRUPT_GRACE_MS, runTrainerCommand } from './trainer-command';
import type { TrainerEvent } from './trainer-process';

/** What the GPU worker's activities need beyond the CPU ones: where the trainer is and where it may write. */
export interface GpuActivityDeps extends ActivityDeps {
  trainer: Config['trainer'];
}

export interface TrainInput {
  runId: string;
  model: string;
  datasetId: string;
  train: SplitSummary;
  validation: SplitSummary;
}

/** Heartbeat details: what the Temporal UI shows, and what the next attempt resumes from. */
export interface TrainProgress {
  attempt: number;
  step: number;
  totalSteps: number | null;
  loss: number | null;
  tokensPerS: number | null;
  etaS: number | null;
  /** The newest checkpoint known to be complete in the store. */
  checkpointStep: number | null;
  checkpointKey: string | null;
  /** Optimizer steps executed by every attempt so far (steps redone after a crash count twice). */
  stepsExecuted: number;
}

export interface TrainSummary {
  versionId: string;
  version: string;
  adapterKey: string;
  totalSteps: number;
  stepsExecuted: number;
  attempts: number;
  resumedFrom: number | null;
  /** The production version whose adapter this run continued; null: it started from the base. */
  startedFrom?: string | null;
  metrics: Record<string, unknown>;
}

const HEARTBEAT_EVERY_MS = 10_000;

export const adapterKey = (model: string, version: string) => `models/${model}/versions/${version}/adapter/`;

/** A base model is a directory on the GPU host: absolute, or relative to TUNELOOP_MODELS_DIR. */
export async function resolveBaseModel(baseModel: string, modelsDir: string): Promise<string> {
  const dir = path.resolve(modelsDir, baseModel);
  const ok = await stat(path.join(dir, 'config.json')).then(
    (s) => s.isFile(),
    () => false,
  );
  if (!ok) {
    throw permanentFailure(
      FailureType.CONFIG_INVALID,
      `base model ${baseModel}: no model directory (config.json) at ${dir} on this GPU host`,
    );
  }
  return dir;
}

/** Two trainers never train the same run at once, on one host or two: a PostgreSQL advisory lock per run. */
export async function withRunLock<T>(db: Db, key: string, fn: () => Promise<T>): Promise<T> {
  const r = await withAdvisoryLock(db, key, {}, fn);
  if (!r.ran) throw retryableFailure(FailureType.RUN_LOCKED, `${key} is held by another trainer`);
  return r.value;
}

/**
 * A trainer that outlived its worker (the worker was killed; the trainer got SIGTERM from the parent-death signal
 * and is writing its last checkpoint) still owns the run folder. Wait for it, so its checkpoint is the resume
 * point and two trainers never share the folder.
 */
async function waitForOrphan(pidFile: string, log: Logger, beat: () => void): Promise<void> {
  const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
  if (!Number.isInteger(pid) || pid <= 1) return;
  const isOurs = async () =>
    (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('tuneloop_trainer');
  if (!(await isOurs())) return;
  log.warn({ pid }, 'a trainer from an earlier attempt is still running; waiting for it to checkpoint and exit');
  const deadline = Date.now() + INTERRUPT_GRACE_MS;
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {
    // gone already
  }
  while ((await isOurs()) && Date.now() < deadline) {
    beat();
    await sleep(500);
  }
  if (await isOurs()) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** The trainer's config file (gpu-worker/src/tuneloop_trainer/config.py validates it again). */
function trainerConfig(o: {
  runId: string;
  base: string;
  trainFile: string;
  validationFile: string | null;
  outputDir: string;
  initAdapter: string | null;
  replayFile: string | null;
  t: TrainingConfig;
}) {
  return {
    run_id: o.runId,
    base_model: o.base,
    train_file: o.trainFile,
    validation_file: o.validationFile,
    output_dir: o.outputDir,
    method: o.t.method,
    lora: { r: o.t.lora.r, alpha: o.t.lora.alpha, dropout: o.t.lora.dropout },
    init_adapter: o.initAdapter,
    replay_file: o.replayFile,
    replay_fraction: o.t.replayFraction,
    learning_rate: o.t.learningRate,
    lr_scheduler: o.t.lrScheduler,
    epochs: o.t.epochs,
    effective_batch_size: o.t.effectiveBatchSize,
    micro_batch_size: o.t.microBatchSize,
    max_length: o.t.maxLength,
    max_steps: o.t.maxSteps ?? null,
    checkpoint_every_steps: o.t.checkpointEverySteps,
    checkpoint_every_minutes: o.t.checkpointEveryMinutes,
    eval_every_steps: o.t.evalEverySteps,
    seed: o.t.seed,
  };
}

export function createTrainActivities(deps: GpuActivityDeps) {
  return {
    /**
     * train: fine-tunes the model on the exported dataset with the Python trainer, heartbeating its progress,
     * uploading each checkpoint (files first, manifest last) and keeping the newest three. A retry, on this host
     * or another, resumes from the newest checkpoint that verifies. The finished adapter goes to the store under
     * the new model version's key, and the version is recorded as a candidate.
     */
    async train(input: TrainInput): Promise<TrainSummary> {
      const ctx = Context.current();
      const attempt = ctx.info.attempt;
      const log = activityLog(deps, { model: input.model, runId: input.runId });
      const model = await requireModel(deps.db, input.model);
      const t = parsePipelineConfig(model.config).training;
      const base = await resolveBaseModel(model.base_model, deps.trainer.modelsDir);
      const run = await getRun(deps.db, input.runId);
      if (!run) throw permanentFailure(FailureType.DATASET_INVALID, `run ${input.runId} was never recorded`);
      const version = versionName(input.runId, new Date(run.started_at));
      const prev = (ctx.info.heartbeatDetails ?? null) as TrainProgress | null;

      return withRunLock(deps.db, `train:${input.runId}`, async () => {
        const work = path.join(deps.trainer.workDir, 'runs', input.runId);
        const out = path.join(work, 'out');
        await mkdir(path.join(work, 'data'), { recursive: true });
        await mkdir(out, { recursive: true });
        const pidFile = path.join(work, 'trainer.pid');
        const progress: TrainProgress = {
          attempt,
          step: prev?.checkpointStep ?? 0,
          totalSteps: prev?.totalSteps ?? null,
          loss: null,
          tokensPerS: null,
          etaS: null,
          checkpointStep: prev?.checkpointStep ?? null,
          checkpointKey: prev?.checkpointKey ?? null,
          stepsExecuted: prev?.stepsExecuted ?? 0,
        };
        const beat = () => ctx.heartbeat(progress);
        beat();
        await waitForOrphan(pidFile, log, beat);

        // Inputs on local disk, each checked against the sha256 export recorded.
        const trainFile = path.join(work, 'data', 'train.jsonl');
        await ensureLocalCopy(deps.store, input.train.key, trainFile, input.train.sha256);
        let validationFile: string | null = null;
        if (input.validation.count > 0) {
          validationFile = path.join(work, 'data', 'validation.jsonl');
          await ensureLocalCopy(deps.store, input.validation.key, validationFile, input.validation.sha256);
        }
        let initAdapter: string | null = null;
        let replayFile: string | null = null;
        let startedFrom: string | null = null;
        if (t.startFrom === 'production') {
          const prod = await productionVersion(deps.db, input.model);
          if (prod?.adapter_key && !adapterFitsBase(prod, model.base_model)) {
            log.warn(
              { production: prod.version, productionBase: prod.base_model, base: model.base_model },
              'production was trained on another base: starting from the base',
            );
          } else if (prod?.adapter_key) {
            startedFrom = prod.version;
            initAdapter = path.join(work, 'init-adapter');
            if (!existsSync(initAdapter)) await downloadDir(deps.store, prod.adapter_key, initAdapter);
            const replay = (prod.manifest as Partial<DatasetManifest> | null)?.splits?.train;
            if (replay && t.replayFraction > 0) {
              replayFile = path.join(work, 'data', 'replay.jsonl');
              await ensureLocalCopy(deps.store, replay.key, replayFile, replay.sha256);
            }
          }
        }
        beat();

        const resume = await findResumePoint(
          { store: deps.store, log },
          input.runId,
          path.join(out, 'checkpoints'),
          path.join(work, 'resume'),
          prev?.checkpointStep != null ? { step: prev.checkpointStep } : null,
        );
        if (resume) log.info({ step: resume.step, from: resume.from }, 'resuming from a checkpoint');
        const configFile = path.join(work, 'train-config.json');
        await writeFile(
          configFile,
          JSON.stringify(
            trainerConfig({
              runId: input.runId,
              base,
              trainFile,
              validationFile,
              outputDir: out,
              initAdapter,
              replayFile,
              t,
            }),
            null,
            2,
          ),
        );

        // Checkpoint uploads run one after another beside the training, never blocking the trainer's output.
        let uploads: Promise<void> = Promise.resolve();
        let uploadError: unknown = null;
        const startStep = resume?.step ?? 0;
        // The curves go to PostgreSQL a batch at a time beside the training, like the uploads: a crash loses at
        // most the points since the last write, and the resumed attempt reports those steps again.
        const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
        let pending: TrainLogPoint[] = [];
        let logWrites: Promise<void> = Promise.resolve();
        let lastLogWrite = 0;
        const flushLog = (force = false) => {
          if (pending.length === 0 || (!force && Date.now() - lastLogWrite < 5_000)) return logWrites;
          const batch = pending;
          pending = [];
          lastLogWrite = Date.now();
          logWrites = logWrites.then(() =>
            recordTrainLog(deps.db, input.runId, batch).catch((err: unknown) => {
              // The curve is for people; training goes on without it.
              log.warn({ err, points: batch.length }, 'could not record the training curve');
            }),
          );
          return logWrites;
        };
        const onEvent = (e: TrainerEvent) => {
          if (e.event === 'eval') {
            pending.push({ kind: 'validation', step: Number(e.step), loss: num(e.loss), lr: null, tokensPerS: null });
            void flushLog();
          } else if (e.event === 'progress') {
            pending.push({
              kind: 'train',
              step: Number(e.step),
              loss: num(e.loss),
              lr: num(e.lr),
              tokensPerS: num(e.tokens_per_s),
            });
            void flushLog();
            progress.step = Number(e.step);
            progress.totalSteps = Number(e.total);
            progress.loss = typeof e.loss === 'number' ? e.loss : null;
            progress.tokensPerS = typeof e.tokens_per_s === 'number' ? e.tokens_per_s : null;
            progress.etaS = typeof e.eta_s === 'number' ? e.eta_s : null;
            log.debug(
              { attempt, step: progress.step, total: progress.totalSteps, loss: progress.loss },
              'trainer progress',
            );
            beat();
          } else if (e.event === 'start') {
            progress.totalSteps = Number(e.total_steps);
            log.info({ attempt, step: e.step, total: e.total_steps, resumedFrom: e.resumed_from }, 'trainer started');
          } else if (e.event === 'checkpoint') {
            const dir = String(e.path);
            // The curve up to this step is written before the checkpoint can become a resume point: a crash
            // after it leaves no gap (the resumed attempt reports every later step again).
            const logged = flushLog(true);
            uploads = uploads.then(async () => {
              await logged;
              if (uploadError) return;
              try {
                const up = await uploadCheckpoint(deps, input.runId, dir);
                await pruneCheckpoints(deps, input.runId);
                if (up.step >= (progress.checkpointStep ?? -1)) {
                  progress.checkpointStep = up.step;
                  progress.checkpointKey = up.key;
                }
                log.info({ step: up.step, key: up.key, bytes: up.bytes, reason: e.reason }, 'checkpoint uploaded');
                beat();
              } catch (err) {
                uploadError = err;
                log.error({ err, dir }, 'checkpoint upload failed');
              }
            });
          }
        };

        const done = await runTrainerCommand({
          trainer: deps.trainer,
          command: 'train',
          args: ['--config', configFile, ...(resume ? ['--resume', resume.dir] : [])],
          cwd: work,
          log,
          onEvent,
          heartbeat: { everyMs: HEARTBEAT_EVERY_MS, details: () => progress },
          started: (pid) => writeFile(pidFile, String(pid)),
          afterExit: async () => {
            await flushLog(true);
            await uploads;
            progress.stepsExecuted += Math.max(0, progress.step - startStep);
            beat();
            if (uploadError) throw uploadError;
          },
          cleanup: () => rm(pidFile, { force: true }),
        });
        const adapterDir = String(
          (done.outputs as Record<string, unknown> | undefined)?.adapter_dir ?? path.join(out, 'adapter'),
        );
        await writeManifestFor(adapterDir, { model: input.model, version, runId: input.runId });
        const key = adapterKey(input.model, version);
        await uploadDir(deps.store, adapterDir, key);
        const metrics = (done.metrics ?? {}) as Record<string, unknown>;
        const row = await insertCandidateVersion(deps.db, {
          model: input.model,
          version,
          runId: input.runId,
          datasetId: input.datasetId,
          adapterKey: key,
          baseModel: model.base_model,
          metrics,
        });
        if (!row) {
          throw permanentFailure(
            FailureType.INVALID_STATE,
            `version ${version} of ${input.model} already belongs to another run; nothing was overwritten`,
          );
        }
        log.info({ version, steps: progress.step, executed: progress.stepsExecuted }, 'trained');
        // The store holds the checkpoints and the adapter now; the host's copy is scratch.
        await rm(work, { recursive: true, force: true });
        return {
          versionId: row.id,
          version,
          adapterKey: key,
          totalSteps: progress.totalSteps ?? progress.step,
          stepsExecuted: progress.stepsExecuted,
          attempts: attempt,
          resumedFrom: resume?.step ?? null,
          startedFrom,
          metrics,
        };
      });
    },
  };
}
