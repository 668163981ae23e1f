import express from 'express';
import type { Client } from '@temporalio/client';
import { pinoHttp } from 'pino-http';
import type { Db } from '../db/pool';
import type { Logger } from '../log';
import type { BlobStore } from '../storage/blob-store';
import { authenticate } from './auth';
import { errorMiddleware, notFound } from './errors';
import { createHealthRouter } from './health.router';
import { createInteractionsRouter } from './interactions.router';
import { createRunsRouter } from './runs.router';
import { createSubjectsRouter } from './subjects.router';

export interface ApiDeps {
  db: Db;
  temporal: Client;
  store: BlobStore;
  log: Logger;
  taskQueue: string;
  /** The GPU worker's queue, passed to the runs it starts; the default name when absent. */
  gpuTaskQueue?: string;
  /** Passed to the runs it starts (see PipelineInput.gpuHeartbeatTimeoutS). */
  gpuHeartbeatTimeoutS?: number;
  bodyLimit: string;
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
  app.use(createHealthRouter(deps));
  // Authenticate before reading a body: an anonymous caller gets a 401, never a parse of its payload.
  app.use('/v1', authenticate(deps.db));
  app.use(express.json({ limit: deps.bodyLimit, strict: true }));
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
  app.use(notFound);
  app.use(errorMiddleware(deps.log));
  return app;
}
