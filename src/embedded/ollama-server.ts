import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../config';
import type { Logger } from '../log';
import { spawnServer, waitUntilReady, type ServerProcess } from './server-process';

export interface RunningOllama {
  /** http://127.0.0.1:PORT */
  url: string;
  modelsDir: string;
  server: ServerProcess;
  /** SIGTERM (Ollama stops its runners), then SIGKILL of the whole group (at once after it exits, else after a deadline). */
  stop(): Promise<void>;
  /** SIGKILL of the server and its runners at once: a crash, for tests. */
  kill(): Promise<void>;
}

/** The Ollama server built by scripts/setup.sh from the Go module proxy (never downloaded at run time). */
export function ollamaBinary(): string {
  const bin = process.env.TUNELOOP_OLLAMA_BIN ?? path.join(REPO_ROOT, '.tools/bin/ollama');
  if (!existsSync(bin)) {
    throw new Error(
      `Ollama not found at ${bin}: run \`bash scripts/setup.sh\` (it builds it from the Go module proxy)`,
    );
  }
  return bin;
}

/**
 * Starts `ollama serve` on a private port with its models (and its key: HOME) under `dir`, and waits until it
 * answers. It runs in a process group of its own: a runner (one per loaded model) outlives a server killed with
 * SIGKILL, so stopping and killing address the whole group.
 */
export async function startOllama(opts: {
  dir: string;
  port: number;
  log: Logger;
  readyTimeoutMs?: number;
  /**
   * A second server on the models of the one that owns `dir` (the canary's): it only reads them, so it must not
   * tidy them up either. Ollama deletes blobs no manifest names when it starts, which would take the blobs the
   * other server has been sent for a model it has not created yet; and the scratch folder of a conversion may be
   * the other server's, at work.
   */
  readsModelsOf?: boolean;
  /** Where the running server is recorded (see server-process.ts). */
  runDir?: string;
}): Promise<RunningOllama> {
  const dir = path.resolve(opts.dir);
  const modelsDir = path.join(dir, 'models');
  await mkdir(modelsDir, { recursive: true });
  if (!opts.readsModelsOf) await removeAbandonedConversions(modelsDir, opts.log);
  const home = opts.readsModelsOf ? path.join(dir, `reader-${opts.port}`) : dir;
  await mkdir(home, { recursive: true });
  const url = `http://127.0.0.1:${opts.port}`;
  const server = spawnServer({
    name: `ollama-${opts.port}`,
    command: ollamaBinary(),
    args: ['serve'],
    env: {
      ...process.env,
      OLLAMA_HOST: `127.0.0.1:${opts.port}`,
      OLLAMA_MODELS: modelsDir,
      ...(opts.readsModelsOf ? { OLLAMA_NOPRUNE: '1' } : {}),
      // Ollama makes its identity key under $HOME/.ollama on first start: keep it beside the models (one a server).
      HOME: home,
    },
    // Ollama stops its runners on SIGTERM; what remains of the group after the deadline is killed.
    stopSignal: 'SIGTERM',
    stopTimeoutMs: 10_000,
    runDir: opts.runDir,
    log: opts.log,
  });
  const answers = () =>
    fetch(`${url}/api/version`, { signal: AbortSignal.timeout(1_000) }).then(
      (r) => r.ok,
      () => false,
    );
  await waitUntilReady(server, answers, { timeoutMs: opts.readyTimeoutMs ?? 30_000, intervalMs: 100 });
  opts.log.info({ url, modelsDir, readsModelsOf: !!opts.readsModelsOf }, 'ollama ready');
  return { url, modelsDir, server, stop: () => server.stop(), kill: () => server.kill() };
}

/**
 * A server killed while it converted a model leaves its scratch folder (`ollama-safetensors*`) in the models
 * directory, and nothing of Ollama's ever removes it. Nothing can be using it before the server starts.
 */
async function removeAbandonedConversions(modelsDir: string, log: Logger) {
  for (const name of await readdir(modelsDir).catch(() => [] as string[])) {
    if (!name.startsWith('ollama-safetensors')) continue;
    log.warn({ dir: name }, 'removing the scratch folder of an interrupted model import');
    await rm(path.join(modelsDir, name), { recursive: true, force: true });
  }
}
