import { setTimeout as sleep } from 'node:timers/promises';
import net from 'node:net';
import path from 'node:path';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { ShadowRunner } from '../api/shadow';
import { createApp } from '../api/app';
import { ServingRecorder } from '../api/serving';
import { resumePendingErasures } from '../temporal/erasure-client';
import type { Config } from '../config';
import { migrateToLatest } from '../db/migrate';
import { createDb, type Db } from '../db/pool';
import type { Logger } from '../log';
import { createBlobStore } from '../storage';
import type { BlobStore } from '../storage/blob-store';
import { startEmbeddedPostgres, type RunningPostgres } from './embedded-postgres';
import { startTemporalDevServer, type RunningTemporal } from './temporal-dev-server';
import { startOllama, type RunningOllama } from './ollama-server';
import { OllamaClient } from '../llm/ollama';
import { installTemporalRuntime } from '../temporal/temporal-runtime';
import { bundleWorkflows, createCpuWorker, createGpuWorker } from '../temporal/worker';
import { readFileSync, existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { failLostAttempts } from '../temporal/attempt-journal';
import { pruneFinishedRunFolders } from '../activities/gpu-workdir';
import { claimRunDir, killAllServers } from './server-process';

/** Fails early, naming the setting, when a port the embedded stack needs is taken (often: `up` already runs). */
export async function assertPortFree(port: number, variable: string): Promise<void> {
  const free = await new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
  if (!free) {
    throw new Error(`port ${port} is in use (is \`tuneloop up\` already running?); choose another with ${variable}`);
  }
}

/**
 * Runs until the first SIGINT, SIGTERM or SIGHUP, then stops the stack in order (hard deadline 60 s). A second
 * signal while it stops kills every server this process started, at once, and exits.
 */
export async function serveUntilSignalled(stack: Stack, log: Logger): Promise<void> {
  const signal = await stopSignals(log).first;
  log.info({ signal }, 'shutting down');
  const hard = setTimeout(() => {
    log.error('shutdown took longer than 60 s; killing what is left');
    killAllServers();
    process.exit(1);
  }, 60_000);
  await stack.stop();
  clearTimeout(hard);
}

/**
 * Stop signals for a process that stops in order: `first` resolves with the first one; any later one kills every
 * server this process started and exits with 130 (the second Ctrl-C of an impatient user).
 */
export function stopSignals(log: Logger): { first: Promise<NodeJS.Signals>; dispose: () => void } {
  let seen: NodeJS.Signals | null = null;
  let resolve!: (s: NodeJS.Signals) => void;
  const first = new Promise<NodeJS.Signals>((r) => (resolve = r));
  const onSignal = (signal: NodeJS.Signals) => {
    if (seen) {
      log.warn({ signal }, 'second stop signal: killing the servers and exiting now');
      killAllServers();
      process.exit(130);
    }
    seen = signal;
    resolve(signal);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  return { first, dispose: () => signals.forEach((s) => process.removeListener(s, onSignal)) };
}

/** Things to stop, in reverse order of starting. */
export class Stack {
  private readonly stops: { name: string; stop: () => Promise<unknown> }[] = [];
  constructor(readonly log: Logger) {}
  add(name: string, stop: () => Promise<unknown>) {
    this.stops.push({ name, stop });
  }
  private stopping: Promise<void> | null = null;
  /** Stops everything once, however many callers ask (a signal handler and a `finally` may both). */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const stops = this.stops.splice(0).reverse();
      for (const { name, stop } of stops) {
        try {
          await stop();
          this.log.info({ component: name }, 'stopped');
        } catch (err) {
          this.log.warn({ err, component: name }, 'error while stopping');
        }
      }
      this.stopping = null;
    })();
    return this.stopping;
  }
}

export const embeddedPgDir = (config: Config) => path.join(config.home, 'postgres');

/** The database URL: DATABASE_URL, or the embedded server that `tuneloop up` runs under the home folder. */
export function databaseUrl(config: Config): string {
  if (config.databaseUrl) return config.databaseUrl;
  const pwFile = path.join(embeddedPgDir(config), 'superuser-password');
  if (!existsSync(pwFile)) {
    throw new Error(
      `DATABASE_URL is not set and no embedded PostgreSQL exists under ${config.home}: run \`tuneloop up\` first`,
    );
  }
  const pw = encodeURIComponent(readFileSync(pwFile, 'utf8').trim());
  return `postgres://postgres:${pw}@127.0.0.1:${config.embeddedPgPort}/tuneloop`;
}

export const temporalAddress = (config: Config) => config.temporalAddress ?? `127.0.0.1:${config.temporalPort}`;

/** OLLAMA_HOST, or the Ollama `tuneloop up` runs on its private port. */
export const ollamaUrl = (config: Config) => config.ollamaHost ?? `http://127.0.0.1:${config.ollamaPort}`;

/**
 * The Ollama that answers canary traffic: OLLAMA_CANARY_HOST, else OLLAMA_HOST's (one server for both), else the
 * second one `tuneloop up` runs on the same models.
 */
export const canaryOllamaUrl = (config: Config) =>
  config.ollamaCanaryHost ?? config.ollamaHost ?? `http://127.0.0.1:${config.ollamaCanaryPort}`;

/**
 * The process's Ollama clients (one pool of connections each): production's, and the canary's, which is the same
 * client when both are one server. Closed with the stack when one is given.
 */
export function openOllama(config: Config, stack?: Stack): { ollama: OllamaClient; canaryOllama: OllamaClient } {
  const ollama = new OllamaClient(ollamaUrl(config));
  stack?.add('ollama-client', () => ollama.close());
  if (canaryOllamaUrl(config) === ollamaUrl(config)) return { ollama, canaryOllama: ollama };
  const canaryOllama = new OllamaClient(canaryOllamaUrl(config));
  stack?.add('canary-ollama-client', () => canaryOllama.close());
  return { ollama, canaryOllama };
}

/** Where `tuneloop up` keeps the records of the servers it runs (see server-process.ts). */
export const runDir = (config: Config) => path.join(config.home, 'run');

/**
 * Starts what the embedded default needs (PostgreSQL, the Temporal dev server, Ollama) unless the config points
 * elsewhere, side by side. The home folder is claimed first: a second `up` on it is refused, and servers an earlier
 * one left behind (it was killed) are stopped. They stop in the order the issue of a clean stop asks for: the
 * Temporal dev server, then Ollama, then PostgreSQL (everything that uses them is stopped before: see Stack).
 */
export async function startEmbeddedServices(config: Config, stack: Stack, log: Logger) {
  const embeddedCanary = !config.ollamaHost && !config.ollamaCanaryHost;
  const wanted = !config.databaseUrl || !config.temporalAddress || !config.ollamaHost || embeddedCanary;
  const records = wanted ? runDir(config) : undefined;
  if (records) {
    const release = await claimRunDir(records, log, 'up');
    stack.add('home-lock', release);
    // The home is ours alone now: staging folders in it are what a killed process left (local copies of rows).
    await rm(path.join(config.home, 'tmp'), { recursive: true, force: true });
  }
  if (!config.databaseUrl) await assertPortFree(config.embeddedPgPort, 'TUNELOOP_EMBEDDED_PG_PORT');
  if (!config.temporalAddress) {
    await assertPortFree(config.temporalPort, 'TEMPORAL_PORT');
    await assertPortFree(config.temporalUiPort, 'TEMPORAL_UI_PORT');
  }
  if (!config.ollamaHost) await assertPortFree(config.ollamaPort, 'TUNELOOP_OLLAMA_PORT');
  if (embeddedCanary) await assertPortFree(config.ollamaCanaryPort, 'TUNELOOP_OLLAMA_CANARY_PORT');
  const started = await Promise.allSettled([
    config.databaseUrl
      ? null
      : startEmbeddedPostgres({ dir: embeddedPgDir(config), port: config.embeddedPgPort, log, runDir: records }),
    config.ollamaHost
      ? null
      : startOllama({ dir: path.join(config.home, 'ollama'), port: config.ollamaPort, log, runDir: records }),
    embeddedCanary
      ? startOllama({
          dir: path.join(config.home, 'ollama'),
          port: config.ollamaCanaryPort,
          log,
          readsModelsOf: true,
          runDir: records,
        })
      : null,
    config.temporalAddress
      ? null
      : startTemporalDevServer({
          dbFile: path.join(config.home, 'temporal', 'temporal.sqlite'),
          port: config.temporalPort,
          uiPort: config.temporalUiPort,
          namespace: config.temporalNamespace,
          log,
          runDir: records,
        }),
  ] as const);
  // Added in this order so that they stop in the reverse one, whatever failed to start.
  const [pg, ollama, canary, temporal] = started.map((r) => (r.status === 'fulfilled' ? r.value : null)) as [
    RunningPostgres | null,
    RunningOllama | null,
    RunningOllama | null,
    RunningTemporal | null,
  ];
  if (pg) stack.add('postgres', () => pg.stop());
  if (ollama) stack.add('ollama', () => ollama.stop());
  if (canary) stack.add('canary-ollama', () => canary.stop());
  if (temporal) stack.add('temporal', () => temporal.stop());
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  if (pg) log.info({ port: pg.port }, 'embedded postgres ready');
  return { pg, temporal, ollama };
}

export async function openDb(config: Config, stack: Stack, log: Logger, opts: { migrate: boolean }): Promise<Db> {
  const db = createDb(databaseUrl(config), log, config.databasePoolMax);
  stack.add('db', () => db.destroy());
  if (opts.migrate) {
    const applied = await migrateToLatest(db);
    if (applied.length) log.info({ applied }, 'migrations applied');
  }
  return db;
}

export function openStore(config: Config): Promise<BlobStore> | BlobStore {
  return createBlobStore(config.store, config.s3 ?? undefined);
}

export async function openTemporalClient(config: Config, stack: Stack): Promise<Client> {
  // Lazy: the API starts (and answers 503) while the workflow engine is still coming up.
  const connection = Connection.lazy({ address: temporalAddress(config) });
  stack.add('temporal-client', () => connection.close());
  return new Client({ connection, namespace: config.temporalNamespace });
}

export async function startApi(
  config: Config,
  stack: Stack,
  deps: { db: Db; temporal: Client; store: BlobStore; log: Logger; ollama: OllamaClient; canaryOllama: OllamaClient },
): Promise<{ server: Server; url: string }> {
  const recorder = new ServingRecorder(deps.db, deps.log);
  // Added before the server, so stopped after it: what the last requests served is written before exit.
  stack.add('serving-recorder', () => recorder.close());
  // Closed before the recorder: the candidate calls in flight write their pairs through it.
  const shadow = new ShadowRunner(deps.db, deps.canaryOllama, recorder, deps.log);
  stack.add('shadow', () => shadow.close());
  const app = createApp({
    ...deps,
    recorder,
    shadow,
    taskQueue: config.taskQueue,
    gpuTaskQueue: config.gpuTaskQueue,
    gpuHeartbeatTimeoutS: config.gpuHeartbeatTimeoutS,
    bodyLimit: config.api.bodyLimit,
    limits: config.api.limits,
  });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(config.api.port, config.api.host, () => resolve(s));
    s.once('error', reject);
  });
  server.keepAliveTimeout = 5_000;
  stack.add('api', () => closeServer(server));
  resumeErasuresInBackground(config, stack, deps);
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.api.port;
  return { server, url: `http://${config.api.host}:${port}` };
}

/** Starts the workflows of erasures left pending by a crash, retrying until the workflow engine answers. */
function resumeErasuresInBackground(config: Config, stack: Stack, deps: { db: Db; temporal: Client; log: Logger }) {
  const stop = new AbortController();
  stack.add('erasure-resume', async () => stop.abort());
  void (async () => {
    for (let attempt = 0; !stop.signal.aborted; attempt++) {
      try {
        await resumePendingErasures(deps.db, deps.temporal, config.taskQueue, deps.log);
        return;
      } catch (err) {
        deps.log.warn({ err: (err as Error).message }, 'could not resume pending erasures yet; retrying');
        await sleep(Math.min(30_000, 1_000 * 2 ** attempt), undefined, { signal: stop.signal }).catch(() => undefined);
      }
    }
  })();
}

/** Stops accepting, lets requests in flight finish, and cuts idle keep-alive sockets; hard deadline 10 s. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, 10_000);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

export async function startWorkers(
  config: Config,
  stack: Stack,
  deps: { db: Db; store: BlobStore; log: Logger; ollama: OllamaClient; canaryOllama: OllamaClient },
  which: { cpu: boolean; gpu: boolean },
): Promise<Worker[]> {
  installTemporalRuntime(deps.log);
  // Attempts a worker of this host was running when it died are failed now, to be retried at once (see
  // attempt-journal.ts), instead of when their heartbeat timeouts pass.
  const journalDir = path.join(config.home, 'run', 'attempts');
  await failLostAttempts(journalDir, {
    address: temporalAddress(config),
    namespace: config.temporalNamespace,
    log: deps.log,
  });
  const connection = await NativeConnection.connect({ address: temporalAddress(config) });
  stack.add('worker-connection', () => connection.close());
  const workers: Worker[] = [];
  if (which.cpu) {
    const bundle = await bundleWorkflows();
    workers.push(
      await createCpuWorker({
        connection,
        namespace: config.temporalNamespace,
        taskQueue: config.taskQueue,
        bundle,
        deps: { ...deps, tmpDir: path.join(config.home, 'tmp') },
        lifecycle: { journalDir },
      }),
    );
  }
  if (which.gpu) {
    await pruneFinishedRunFolders(config.trainer.workDir, deps.db, deps.log);
    workers.push(
      await createGpuWorker({
        connection,
        namespace: config.temporalNamespace,
        taskQueue: config.gpuTaskQueue,
        deps: { ...deps, tmpDir: path.join(config.home, 'tmp'), trainer: config.trainer },
        lifecycle: { journalDir },
      }),
    );
  }
  const running = workers.map((w) => w.run());
  stack.add('workers', async () => {
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await Promise.allSettled(running);
  });
  for (const [i, r] of running.entries()) {
    r.catch((err) => deps.log.error({ err, worker: i }, 'worker stopped with an error'));
  }
  return workers;
}
