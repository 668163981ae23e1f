import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config';
import type { Logger } from '../log';
import { describeExit, startTrainer } from '../activities/trainer-process';

/** The name a model definition gives as `baseModel` to train on the tiny model (resolved in TUNELOOP_MODELS_DIR). */
export const TINY_BASE_MODEL = 'tiny-llama';

/**
 * Makes the tiny Llama base model (random weights, a tokenizer trained locally; gpu-worker's `init-tiny`) in the
 * models folder, unless it is there already: what the demo and the tests train on where no real base model is.
 */
export async function ensureTinyBaseModel(trainer: Config['trainer'], log: Logger): Promise<string> {
  await mkdir(trainer.modelsDir, { recursive: true });
  const dir = path.join(trainer.modelsDir, TINY_BASE_MODEL);
  const proc = startTrainer({
    trainer,
    command: 'init-tiny',
    args: ['--out', dir],
    cwd: trainer.modelsDir,
    log,
  });
  const x = await proc.exited;
  if (x.code !== 0) throw new Error(describeExit('init-tiny', x));
  return dir;
}
