import path from 'node:path';
import { describeExit, startTrainer } from '../../src/activities/trainer-process';
import { loadConfig } from '../../src/config';
import { readImportPlan, type ImportPlan } from '../../src/llm/import';
import type { Logger } from '../../src/log';
import { ensureTinyBaseModel, TINY_BASE_MODEL } from '../../src/embedded/base-models';

/**
 * The tiny base model, made in `dir` and staged for Ollama exactly as the register stage stages a base: what the
 * serving benchmarks import (random weights: only the plumbing's speed is measured).
 */
export async function stageTinyModel(dir: string, log: Logger): Promise<ImportPlan> {
  const trainer = { ...loadConfig({}).trainer, modelsDir: path.join(dir, 'models'), workDir: path.join(dir, 'gpu') };
  await ensureTinyBaseModel(trainer, log);
  const stage = path.join(dir, 'stage');
  const x = await startTrainer({
    trainer,
    command: 'ollama-stage',
    args: ['--base', path.join(trainer.modelsDir, TINY_BASE_MODEL), '--out', stage],
    cwd: dir,
    log,
  }).exited;
  if (x.code !== 0) throw new Error(describeExit('ollama-stage', x));
  return readImportPlan(path.join(stage, 'ollama_import.json'));
}

/** The q-quantile of xs, interpolated. */
export const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  return s[lo]! + (s[Math.ceil(pos)]! - s[lo]!) * (pos - lo);
};

/** Milliseconds to three decimals, for tables. */
export const ms = (x: number) => Math.round(x * 1000) / 1000;
