import express from 'express';
import type { Client } from '@temporalio/client';
import { pinoHttp } from 'pino-http';
import type { Db } from '../db/pool';
import type { Logger } from '../log';
import type { BlobStore } from '../storage/blob-store';
import { authenticate, requireRole } from './auth';
import { jsonBody, strictUrlEncoding } from './body';
import { errorMiddleware, notFound } from './errors';
import { createHealthRouter } from './health.router';
import { createDocsRouter } from './docs.router';
import { createPagesRouter } from './pages/pages.router';
import { createInteractionsRouter } from './interactions.router';
import { createRunsRouter } from './runs.router';
import { createSubjectsRouter } from './subjects.router';
import { createChatRouter } from './chat.router';
import { createModelsRouter } from './models.router';
import { createSchedulesRouter } from './schedules.router';
import { Metrics } from './metrics';
import { createOpenAiRouter, OPENAI_BASE } from './openai.router';
import { DEFAULT_LIMITS, FairUse, type FairUseLimits } from './fair-use';
import { ShadowRunner } from './shadow';
import { ServingCache, ServingRecorder } from './serving';
import type { OllamaClient } from '../llm/ollama';
import { IncumbentClients } from '../llm/incumbent';
import { Breakers } from '../domain/breaker';

export interface ApiDeps {
  db: Db;
  temporal: Client;
  store: BlobStore;
  log: Logger;
  ollama: OllamaClient;
  /** The Ollama that answers canary traffic; production's when absent. */
  canaryOllama?: OllamaClient;
  /** Shared with the caller so it can flush what was served (tests, shutdown); made here when absent. */
  recorder?: ServingRecorder;
  cache?: ServingCache;
  taskQueue: string;
  /** The GPU worker's queue, passed to the runs it starts; the default name when absent. */
  gpuTaskQueue?: string;
  /** Passed to the runs it starts (see PipelineInput.gpuHeartbeatTimeoutS). */
  gpuHeartbeatTimeoutS?: number;
  bodyLimit: string;
  /** How long a key that checked out is trusted without asking the database again (revocation delay). */
  authCacheMs?: number;
  /** The models' hosted incumbents; made here (reading keys from process.env) when absent. */
  incumbents?: IncumbentClients;
  /** The shadow stage's background candidate calls; made here when absent (the caller closes it on shutdown). */
  shadow?: ShadowRunner;
  /** Fair use of the inference endpoints (per key and per model); DEFAULT_LIMITS when absent. */
  limits?: FairUseLimits;
  /** How long an erasure request waits for its datasets to be rewritten before answering 202. */
  erasureWaitMs?: number;
}

export function createApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(
    pinoHttp({
      logger: deps.log,
      genReqId: (req, res) => {
        const id = req.headers['x-request-id'];
        const reqId = typeof id === 'string' && /^[\w-]{1,100}$/.test(id) ? id : crypto.randomUUID();
        res.setHeader('x-request-id', reqId);
        return reqId;
      },
      customLogLevel: (_req, res, err) =>
        err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'debug',
    }),
  );
  const metrics = new Metrics(deps.db);
  app.use(metrics.middleware);
  app.use(createHealthRouter(deps));
  app.use(createDocsRouter()); // GET /openapi.json and /docs: no key needed
  // The operator pages, with their own login (a session cookie) and their own error pages.
  app.use(createPagesRouter({ db: deps.db, temporal: deps.temporal, store: deps.store, taskQueue: deps.taskQueue }));
  const cache = deps.cache ?? new ServingCache(deps.db);
  const recorder = deps.recorder ?? new ServingRecorder(deps.db, deps.log);
  app.locals.recorder = recorder;
  const chat = {
    ollama: deps.ollama,
    canaryOllama: deps.canaryOllama ?? deps.ollama,
    cache,
    recorder,
    log: deps.log,
    incumbents: deps.incumbents ?? new IncumbentClients(),
    breakers: new Breakers(),
    fairUse: new FairUse(deps.limits ?? DEFAULT_LIMITS),
    shadow: deps.shadow ?? new ShadowRunner(deps.db, deps.canaryOllama ?? deps.ollama, recorder, deps.log),
  };
  app.locals.shadow = chat.shadow;
  recorder.observers.push((r) => metrics.served(r));
  chat.shadow.dropObservers.push((model) => metrics.shadowDrop(model));
  // For Prometheus, with an operator key (`Authorization: Bearer`, which Prometheus's scrape config can send).
  app.get(
    '/metrics',
    authenticate(deps.db, { cacheMs: deps.authCacheMs }),
    requireRole('operator'),
    async (_req, res) => {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },
  );
  // The OpenAI-compatible surface answers everything, errors included, in OpenAI's shape: it has its own stack.
  app.use(
    OPENAI_BASE,
    createOpenAiRouter({ ...chat, db: deps.db, bodyLimit: deps.bodyLimit, authCacheMs: deps.authCacheMs }),
  );
  // Authenticate before reading a body: an anonymous caller gets a 401, never a parse of its payload.
  app.use('/v1', authenticate(deps.db, { cacheMs: deps.authCacheMs }));
  app.use(strictUrlEncoding);
  app.use(jsonBody(deps.bodyLimit));
  app.use(createInteractionsRouter(deps));
  app.use(createSubjectsRouter(deps));
  app.use(
    createRunsRouter({
      db: deps.db,
      temporal: deps.temporal,
      taskQueue: deps.taskQueue,
      gpuTaskQueue: deps.gpuTaskQueue,
      gpuHeartbeatTimeoutS: deps.gpuHeartbeatTimeoutS,
    }),
  );
  app.use(createChatRouter(chat));
  app.use(createModelsRouter({ db: deps.db, temporal: deps.temporal, taskQueue: deps.taskQueue, cache }));
  app.use(
    createSchedulesRouter({
      db: deps.db,
      temporal: deps.temporal,
      taskQueue: deps.taskQueue,
      gpuTaskQueue: deps.gpuTaskQueue,
      gpuHeartbeatTimeoutS: deps.gpuHeartbeatTimeoutS,
    }),
  );
  app.use(notFound);
  app.use(errorMiddleware(deps.log));
  return app;
}
