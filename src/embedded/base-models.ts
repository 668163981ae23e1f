import { existsSync } from 'node:fs';
import { mkdir, realpath, symlink } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT, type Config } from '../config';
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

/** The real base the demo trains: SmolLM2-135M-Instruct, which scripts/setup.sh fetches and converts from GGUF. */
export const DEMO_BASE_MODEL = 'smollm2-135m-instruct';

/**
 * Puts the demo's real base model (setup made it under .tools/models) into the models folder, as a link: nothing is
 * fetched here. Fails, saying what to run, when setup has not made it.
 */
export async function ensureDemoBaseModel(trainer: Config['trainer']): Promise<string> {
  await mkdir(trainer.modelsDir, { recursive: true });
  const made = path.join(REPO_ROOT, '.tools/models', DEMO_BASE_MODEL);
  if (!existsSync(path.join(made, 'config.json'))) {
    throw new Error(
      `${DEMO_BASE_MODEL} is not at ${made}: run \`bash scripts/setup.sh\` (it fetches and converts it once)`,
    );
  }
  const dir = path.join(trainer.modelsDir, DEMO_BASE_MODEL);
  if (!existsSync(dir)) {
    // Two starts at once (a test and a stack on one models folder) may both get here: the second finds the link.
    await symlink(await realpath(made), dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  return dir;
}
