import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { createLogger } from '../../src/log';
import { startEmbeddedPostgres } from '../../src/embedded/embedded-postgres';
import { startTemporalDevServer } from '../../src/embedded/temporal-dev-server';
import { startOllama } from '../../src/embedded/ollama-server';
import { loadConfig } from '../../src/config';
import { ensureTinyBaseModel } from '../../src/embedded/base-models';
import { bundleWorkflows } from '../../src/temporal/worker';
import { freePort } from '../helpers/ports';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    temporalAddress: string;
    /** The dev server's web UI (the operator pages' browser test finds a run there). */
    temporalUiUrl: string;
    workflowBundlePath: string;
    tmpRoot: string;
    /** Holds the tiny base model (`tiny-llama`) that training tests use. */
    modelsDir: string;
    /** A real Ollama server (the one scripts/setup.sh builds), shared; tests use model names of their own. */
    ollamaUrl: string;
  }
}

/**
 * Real servers, started once per test run: a PostgreSQL server (each test file makes its own database on it),
 * the Temporal dev server and Ollama built by scripts/setup.sh (each test file uses its own task queues and
 * model names). The
 * workflow code is bundled once here and shared, as a worker would.
 */
export default async function setup(project: TestProject) {
  const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'tuneloop-test-'));
  await chmod(tmpRoot, 0o755); // the embedded server runs as the `postgres` OS user when we are root
  const modelsDir = path.join(tmpRoot, 'models');
  const trainer = { ...loadConfig({}).trainer, modelsDir, workDir: path.join(tmpRoot, 'gpu-work') };
  const [pg, temporal, bundle, , ollama] = await Promise.all([
    freePort().then((port) =>
      startEmbeddedPostgres({ dir: path.join(tmpRoot, 'pg'), port, database: 'postgres', log }),
    ),
    Promise.all([freePort(), freePort()]).then(([port, uiPort]) =>
      startTemporalDevServer({
        dbFile: path.join(tmpRoot, 'temporal.sqlite'),
        port,
        uiPort,
        namespace: 'default',
        log,
        readyTimeoutMs: 120_000,
      }),
    ),
    bundleWorkflows(),
    ensureTinyBaseModel(trainer, log),
    freePort().then((port) => startOllama({ dir: path.join(tmpRoot, 'ollama'), port, log })),
  ]);
  const workflowBundlePath = path.join(tmpRoot, 'workflow-bundle.js');
  await writeFile(workflowBundlePath, bundle.code);
  project.provide('pgAdminUrl', pg.url);
  project.provide('temporalAddress', temporal.address);
  project.provide('temporalUiUrl', temporal.uiUrl);
  project.provide('workflowBundlePath', workflowBundlePath);
  project.provide('tmpRoot', tmpRoot);
  project.provide('modelsDir', modelsDir);
  project.provide('ollamaUrl', ollama.url);
  return async () => {
    await ollama.stop();
    await temporal.stop();
    await pg.stop();
    await rm(tmpRoot, { recursive: true, force: true });
  };
}
