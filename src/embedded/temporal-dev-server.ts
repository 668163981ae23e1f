import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import type { Logger } from '../log';
import { spawnServer, waitUntilReady, type ServerProcess } from './server-process';

import { REPO_ROOT } from '../config';

export { REPO_ROOT };
export const SEARCH_ATTRIBUTES = {
  TuneloopModel: 'Keyword',
  TuneloopStage: 'Keyword',
  TuneloopOutcome: 'Keyword',
} as const;

export interface RunningTemporal {
  address: string;
  uiUrl: string;
  server: ServerProcess;
  stop(): Promise<void>;
}

/** The Temporal CLI built by scripts/setup.sh from the Go module proxy (never downloaded at run time). */
export function temporalBinary(): string {
  const bin = process.env.TUNELOOP_TEMPORAL_BIN ?? path.join(REPO_ROOT, '.tools/bin/temporal');
  if (!existsSync(bin)) {
    throw new Error(
      `Temporal CLI not found at ${bin}: run \`bash scripts/setup.sh\` (it builds it from the Go module proxy)`,
    );
  }
  return bin;
}

/**
 * Starts `temporal server start-dev` (SQLite file, UI embedded) with our search attributes registered, and
 * waits until its frontend answers. We start it ourselves rather than through the SDK's launcher, which
 * gives a server 5 s to come up: too little on two loaded cores.
 */
export async function startTemporalDevServer(opts: {
  dbFile: string;
  port: number;
  uiPort: number | null;
  namespace: string;
  log: Logger;
  readyTimeoutMs?: number;
  /** Where the running server is recorded (see server-process.ts). */
  runDir?: string;
}): Promise<RunningTemporal> {
  await mkdir(path.dirname(opts.dbFile), { recursive: true });
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(opts.port),
    '--db-filename',
    opts.dbFile,
    '--namespace',
    opts.namespace,
    '--log-level',
    'warn',
    ...Object.entries(SEARCH_ATTRIBUTES).flatMap(([k, v]) => ['--search-attribute', `${k}=${v}`]),
    ...(opts.uiPort === null ? ['--headless'] : ['--ui-port', String(opts.uiPort)]),
  ];
  const server = spawnServer({
    name: 'temporal',
    command: temporalBinary(),
    args,
    stopSignal: 'SIGTERM',
    stopTimeoutMs: 10_000,
    runDir: opts.runDir,
    log: opts.log,
  });
  const address = `127.0.0.1:${opts.port}`;
  const answers = async () => {
    const conn = await Connection.connect({ address, connectTimeout: 1_000 });
    try {
      await conn.workflowService.describeNamespace({ namespace: opts.namespace });
      return true;
    } finally {
      await conn.close();
    }
  };
  await waitUntilReady(server, answers, { timeoutMs: opts.readyTimeoutMs ?? 90_000, intervalMs: 250 });
  opts.log.info({ address }, 'temporal dev server ready');
  return {
    address,
    uiUrl: opts.uiPort === null ? '' : `http://127.0.0.1:${opts.uiPort}`,
    server,
    stop: () => server.stop(),
  };
}
