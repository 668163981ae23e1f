import type { Client } from '@temporalio/client';
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { Db } from '../db/pool';
import { modelExists } from '../db/queries/models';
import { slug } from '../domain/model-config';
import {
  backfillSchema,
  pauseSchema,
  resumeSchema,
  ScheduleMissing,
  SchedulePaused,
  Schedules,
  scheduleSettingsSchema,
  triggerSchema,
  type ScheduleTarget,
} from '../temporal/schedule-client';
import { actorOf, principalOf, requireRole } from './auth';
import { HttpError } from './errors';
import { parse } from './validate';

const modelParams = z.object({ model: slug }).strict();

/** What this router validates with: the OpenAPI document (openapi.ts) is generated from these very objects. */
export const schedulesSchemas = {
  modelParams,
  settings: scheduleSettingsSchema,
  pause: pauseSchema,
  resume: resumeSchema,
  trigger: triggerSchema,
  backfill: backfillSchema,
};

export interface SchedulesRouterDeps extends ScheduleTarget {
  db: Db;
  temporal: Client;
}

/**
 * Each model's nightly schedule (temporal/schedule-client.ts), for operators: `GET /v1/schedules`, and under
 * `/v1/models/:model/schedule` read, set (PUT), delete, pause, resume, trigger and backfill. Every change is audited.
 */
export function createSchedulesRouter({ db, temporal, ...target }: SchedulesRouterDeps) {
  const router = Router();
  const schedules = new Schedules(temporal, db, target);

  const modelOf = async (req: Request) => {
    const { model } = parse(modelParams, req, 'params');
    if (!(await modelExists(db, model))) throw new HttpError(404, 'model_not_found', `model ${model} does not exist`);
    return model;
  };
  /** A body that may be left out (then `{}`), validated when sent. */
  const optionalBody = <T extends z.ZodType>(schema: T, req: Request): z.output<T> =>
    req.is('application/json') ? parse(schema, req, 'body') : schema.parse({});
  const answer = async (fn: () => Promise<unknown>) => {
    try {
      return { schedule: await fn() };
    } catch (err) {
      if (err instanceof ScheduleMissing) throw new HttpError(404, 'schedule_not_found', err.message);
      if (err instanceof SchedulePaused) throw new HttpError(409, 'schedule_paused', err.message, 'body.force');
      throw err;
    }
  };
  const actor = (req: Request) => actorOf(principalOf(req));

  router.get('/v1/schedules', requireRole('operator'), async (_req, res) => {
    res.json({ schedules: await schedules.list() });
  });

  router.get('/v1/models/:model/schedule', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const view = await schedules.get(model);
    if (!view) throw new HttpError(404, 'schedule_not_found', `model ${model} has no schedule`);
    res.json({ schedule: view });
  });

  router.put('/v1/models/:model/schedule', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const settings = parse(scheduleSettingsSchema, req, 'body');
    res.json(await answer(() => schedules.set(model, settings, actor(req))));
  });

  router.delete('/v1/models/:model/schedule', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    await answer(() => schedules.delete(model, actor(req)));
    res.status(204).end();
  });

  router.post('/v1/models/:model/schedule/pause', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const body = parse(pauseSchema, req, 'body');
    res.json(await answer(() => schedules.pause(model, body, actor(req))));
  });

  router.post('/v1/models/:model/schedule/resume', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const body = optionalBody(resumeSchema, req);
    res.json(await answer(() => schedules.resume(model, body, actor(req))));
  });

  router.post('/v1/models/:model/schedule/trigger', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const body = optionalBody(triggerSchema, req);
    res.status(202).json(await answer(() => schedules.trigger(model, body, actor(req))));
  });

  router.post('/v1/models/:model/schedule/backfill', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const body = parse(backfillSchema, req, 'body');
    res.status(202).json(await answer(() => schedules.backfill(model, body, actor(req))));
  });

  return router;
}
