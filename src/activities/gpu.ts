import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';
import { createEvaluateActivities } from './evaluate';
import { createRegisterActivities } from './register';
import { createTrainActivities, type GpuActivityDeps } from './train';

const run = promisify(execFile);

/**
 * The GPU worker's activities (task queue "tuneloop-gpu"): training, evaluation and registration through the
 * Python trainer, and a description of the host (its accelerators and the trainer's runtime) for operators.
 */
export function createGpuActivities(deps: GpuActivityDeps) {
  return {
    ...createTrainActivities(deps),
    ...createEvaluateActivities(deps),
    ...createRegisterActivities(deps),
    async describeGpuHost(): Promise<{ hostname: string; gpus: string[]; python: string | null }> {
      const gpus = await run('nvidia-smi', ['--query-gpu=name,memory.total', '--format=csv,noheader'])
        .then((r) => r.stdout.trim().split('\n').filter(Boolean))
        .catch(() => []);
      const python = await run(deps.trainer.python, ['--version'])
        .then((r) => r.stdout.trim() || r.stderr.trim())
        .catch(() => null);
      return { hostname: os.hostname(), gpus, python };
    },
  };
}
export type GpuActivities = ReturnType<typeof createGpuActivities>;
