import { Router } from 'express';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { z } from 'zod';
import type { Db } from '../db/pool';
import type { Run } from '../db/database';
import { audit } from '../db/queries/audit';
import { modelExists } from '../db/queries/models';
import { getRun, listRuns } from '../db/queries/runs';
import { trainLog } from '../db/queries/train-log';
import { slug } from '../domain/model-config';
import { startPipeline } from '../temporal/pipeline-client';
import { trainingProgress, type TrainingProgress } from '../temporal/training-progress';
import {
  approveUpdate,
  PIPELINE_STATUSES,
  statusQuery,
  type PipelineStatus,
  type StageReport,
} from '../workflows/messages';
import { text } from '../ingest/text';
import { actorOf, assertModelAccess, principalOf, requireRole, type Principal } from './auth';
import { HttpError } from './errors';
import { renderQualityExamples } from './quality-examples';
import { parse } from './validate';

const startSchema = z.object({ model: slug }).strict();
const listSchema = z
  .object({
    model: slug.optional(),
    status: z.enum(PIPELINE_STATUSES).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .strict();
const idSchema = z.object({ id: z.string().regex(/^[A-Za-z0-9-]{1,100}$/, 'expected a run id') }).strict();
// `approved` has no default: an empty body must not send a canary to 100 %.
const approveSchema = z.object({ approved: z.boolean(), reason: text(2000).optional() }).strict();

/** What this router validates with: the OpenAPI document (openapi.ts) is generated from these very objects. */
export const runsSchemas = { start: startSchema, list: listSchema, runParams: idSchema, approve: approveSchema };

export interface RunsRouterDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  gpuTaskQueue?: string;
  gpuHeartbeatTimeoutS?: number;
}

function runView(r: Run) {
  return {
    id: r.id,
    workflowId: r.workflow_id,
    model: r.model_id,
    status: r.status,
    trigger: r.trigger,
    requestedBy: r.requested_by,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    error: r.error,
    stages: r.stages,
    result: r.result,
  };
}

export type RunView = Omit<ReturnType<typeof runView>, 'stages'> & {
  stage?: string | null;
  training?: TrainingProgress;
  stages: StageReport[];
};

/**
 * A run as its API and its page show it: the database's record, or, while it runs, the workflow's own status
 * (stage by stage) and the train activity's live progress; the quality report's examples rendered from
 * PostgreSQL. 404 for a run the principal may not see.
 */
export async function readRun(
  { db, temporal, log }: { db: Db; temporal: Client; log?: { warn: (o: object, m: string) => void } },
  id: string,
  p: Principal,
): Promise<{ run: RunView; live: boolean }> {
  let run = await getRun(db, id);
  if (!run || (p.models && !p.models.includes(run.model_id)))
    throw new HttpError(404, 'run_not_found', `run ${id} not found`);
  let live: PipelineStatus | null = null;
  if (run.status === 'running') {
    try {
      live = await temporal.workflow.getHandle(run.workflow_id, run.id).query(statusQuery);
    } catch (err) {
      log?.warn({ err }, 'status query failed; answering from the database');
    }
  }
  if (live && live.status !== 'running') {
    // It ended between our two reads; the database has its final record.
    run = (await getRun(db, id)) ?? run;
    live = null;
  }
  let training: TrainingProgress | null = null;
  if (live?.stage === 'train') {
    training = await trainingProgress(temporal, run.workflow_id, run.id).catch((err: unknown) => {
      log?.warn({ err }, 'training progress unavailable');
      return null;
    });
  }
  const view = {
    ...runView(run),
    ...(live ? { status: live.status, stage: live.stage, stages: live.stages } : {}),
    // Live from the train activity's heartbeats: step, total, loss, tokens/s, ETA.
    ...(training ? { training } : {}),
  };
  // The quality report's examples, rendered now from PostgreSQL and redacted (the report keeps ids only).
  const stages = await renderQualityExamples(db, view.stages as StageReport[]);
  return { run: { ...view, stages }, live: live !== null };
}

export function createRunsRouter({ db, temporal, taskQueue, gpuTaskQueue, gpuHeartbeatTimeoutS }: RunsRouterDeps) {
  const router = Router();

  router.post('/v1/runs', requireRole('operator'), async (req, res) => {
    const p = principalOf(req);
    const { model } = parse(startSchema, req, 'body');
    if (!(await modelExists(db, model)))
      throw new HttpError(404, 'model_not_found', `model ${model} does not exist`, 'body.model');
    const started = await startPipeline(temporal, db, {
      model,
      taskQueue,
      gpuTaskQueue,
      gpuHeartbeatTimeoutS,
      trigger: 'api',
      requestedBy: actorOf(p),
    });
    await audit(db, {
      actor: actorOf(p),
      action: 'run.request',
      targetType: 'run',
      targetId: started.runId,
      details: { model, requestId: started.requestId },
    });
    res
      .status(202)
      .location(`/v1/runs/${started.runId}`)
      .json({ id: started.runId, workflowId: started.workflowId, model, status: 'running' });
  });

  router.get('/v1/runs', requireRole('app', 'operator'), async (req, res) => {
    const p = principalOf(req);
    const q = parse(listSchema, req, 'query');
    if (q.model) assertModelAccess(p, q.model, 'query.model');
    const rows = await listRuns(db, {
      models: p.models ?? undefined,
      model: q.model,
      status: q.status,
      limit: q.limit,
    });
    res.json({ runs: rows.map(runView) });
  });

  router.get('/v1/runs/:id', requireRole('app', 'operator'), async (req, res) => {
    const { id } = parse(idSchema, req, 'params');
    const view = await readRun({ db, temporal, log: req.log }, id, principalOf(req));
    res.json({ run: view.run, live: view.live });
  });

  /** The train stage's curves: the training loss of every logged step, the held-out loss of every evaluation. */
  router.get('/v1/runs/:id/training-log', requireRole('app', 'operator'), async (req, res) => {
    const { id } = parse(idSchema, req, 'params');
    const run = await getRun(db, id);
    const p = principalOf(req);
    if (!run || (p.models && !p.models.includes(run.model_id)))
      throw new HttpError(404, 'run_not_found', `run ${id} not found`);
    res.json({ id, ...(await trainLog(db, id)) });
  });

  router.post('/v1/runs/:id/cancel', requireRole('operator'), async (req, res) => {
    const p = principalOf(req);
    const { id } = parse(idSchema, req, 'params');
    const run = await getRun(db, id);
    if (!run) throw new HttpError(404, 'run_not_found', `run ${id} not found`);
    if (run.status !== 'running') throw new HttpError(409, 'run_not_running', `run ${id} is ${run.status}`);
    try {
      await temporal.workflow.getHandle(run.workflow_id, run.id).cancel();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError)
        throw new HttpError(409, 'run_not_running', `run ${id} is no longer running`);
      throw err;
    }
    await audit(db, { actor: actorOf(p), action: 'run.cancel', targetType: 'run', targetId: id, details: {} });
    res.status(202).json({ id, status: 'cancelling' });
  });

  /**
   * An operator's answer to a canary waiting for approval before 100 % (a workflow update: the answer is the
   * canary's state once the run has taken it in). `approved: false` rolls the canary back.
   */
  router.post('/v1/runs/:id/approve', requireRole('operator'), async (req, res) => {
    const p = principalOf(req);
    const { id } = parse(idSchema, req, 'params');
    const body = parse(approveSchema, req, 'body');
    const run = await getRun(db, id);
    if (!run) throw new HttpError(404, 'run_not_found', `run ${id} not found`);
    if (run.status !== 'running') throw new HttpError(409, 'run_not_running', `run ${id} is ${run.status}`);
    let canary;
    try {
      canary = await temporal.workflow.getHandle(run.workflow_id, run.id).executeUpdate(approveUpdate, {
        args: [{ approved: body.approved, by: actorOf(p), reason: body.reason ?? null }],
      });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        throw new HttpError(409, 'run_not_running', `run ${id} is no longer running`);
      }
      const message = (err as Error).message ?? '';
      if (
        /not waiting for an approval/.test(message) ||
        /not waiting for an approval/.test(String((err as { cause?: Error }).cause?.message))
      ) {
        throw new HttpError(409, 'not_awaiting_approval', `run ${id} is not waiting for an approval`);
      }
      throw err;
    }
    await audit(db, {
      actor: actorOf(p),
      action: body.approved ? 'run.approve' : 'run.decline',
      targetType: 'run',
      targetId: id,
      details: { reason: body.reason ?? null },
    });
    res.json({ id, approved: body.approved, canary });
  });

  return router;
}
