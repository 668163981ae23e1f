import path from 'node:path';
import { describeExit, startTrainer } from '../../src/activities/trainer-process';
import { loadConfig } from '../../src/config';
import { readImportPlan, type ImportPlan } from '../../src/llm/import';
import type { Logger } from '../../src/log';
import { ensureDemoBaseModel, ensureTinyBaseModel } from '../../src/embedded/base-models';

/**
 * A base model staged in `dir` for Ollama exactly as the register stage stages a base: the tiny one (made here;
 * random weights, so only the plumbing's speed is measured) unless `base` is 'demo', SmolLM2-135M-Instruct as setup
 * made it (a real model, for figures where what it writes matters, such as a judge's answers).
 */
export async function stageBaseModel(dir: string, log: Logger, base: 'tiny' | 'demo' = 'tiny'): Promise<ImportPlan> {
  const trainer = { ...loadConfig({}).trainer, modelsDir: path.join(dir, 'models'), workDir: path.join(dir, 'gpu') };
  const made = base === 'demo' ? await ensureDemoBaseModel(trainer) : await ensureTinyBaseModel(trainer, log);
  const stage = path.join(dir, 'stage');
  const x = await startTrainer({
    trainer,
    command: 'ollama-stage',
    args: ['--base', made, '--out', stage],
    cwd: dir,
    log,
  }).exited;
  if (x.code !== 0) throw new Error(describeExit('ollama-stage', x));
  return readImportPlan(path.join(stage, 'ollama_import.json'));
}

/** The tiny base model, staged: what the serving benchmarks import. */
export const stageTinyModel = (dir: string, log: Logger) => stageBaseModel(dir, log, 'tiny');

/** The q-quantile of xs, interpolated. */
export const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  return s[lo]! + (s[Math.ceil(pos)]! - s[lo]!) * (pos - lo);
};

/** Milliseconds to three decimals, for tables. */
export const ms = (x: number) => Math.round(x * 1000) / 1000;
