import type { Client } from '@temporalio/client';
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { Db } from '../db/pool';
import { audit } from '../db/queries/audit';
import { modelExists } from '../db/queries/models';
import { slug } from '../domain/model-config';
import { text } from '../ingest/text';
import {
  backfillSchedule,
  deleteSchedule,
  getSchedule,
  listSchedules,
  pauseSchedule,
  resumeSchedule,
  ScheduleMissing,
  scheduleSettingsSchema,
  setSchedule,
  triggerSchedule,
  type ScheduleTarget,
} from '../temporal/schedule-client';
import { actorOf, principalOf, requireRole } from './auth';
import { HttpError } from './errors';
import { parse } from './validate';

const modelParams = z.object({ model: slug }).strict();
const pauseBody = z.object({ reason: text(500).min(1, 'say why: the note is what the next operator reads') }).strict();
const resumeBody = z.object({ reason: text(500).optional() }).strict();
const emptyBody = z.object({}).strict();
const backfillBody = z
  .object({ from: z.iso.datetime({ offset: true }), to: z.iso.datetime({ offset: true }) })
  .strict()
  .refine((b) => Date.parse(b.from) < Date.parse(b.to), { message: 'from must be before to', path: ['to'] })
  .refine((b) => Date.parse(b.to) <= Date.now(), { message: 'a backfill takes past runs only', path: ['to'] })
  .refine((b) => Date.parse(b.to) - Date.parse(b.from) <= 31 * 24 * 3600_000, {
    message: 'at most 31 days at once',
    path: ['from'],
  });

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

  const modelOf = async (req: Request) => {
    const { model } = parse(modelParams, req, 'params');
    if (!(await modelExists(db, model))) throw new HttpError(404, 'model_not_found', `model ${model} does not exist`);
    return model;
  };
  const audited = async (req: Request, model: string, action: string, details: Record<string, unknown> = {}) =>
    audit(db, { actor: actorOf(principalOf(req)), action, targetType: 'schedule', targetId: model, details });
  /** Runs a change of an existing schedule; a 404 when the model has none. */
  const change = async <T>(model: string, fn: () => Promise<T>) => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ScheduleMissing) throw new HttpError(404, 'schedule_not_found', err.message);
      throw err;
    }
  };

  router.get('/v1/schedules', requireRole('operator'), async (_req, res) => {
    res.json({ schedules: await listSchedules(temporal) });
  });

  router.get('/v1/models/:model/schedule', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const view = await getSchedule(temporal, model);
    if (!view) throw new HttpError(404, 'schedule_not_found', `model ${model} has no schedule`);
    res.json({ schedule: view });
  });

  router.put('/v1/models/:model/schedule', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const settings = parse(scheduleSettingsSchema, req, 'body');
    const actor = actorOf(principalOf(req));
    const view = await setSchedule(temporal, { model, settings, target, actor });
    await audited(req, model, 'schedule.set', settings);
    res.json({ schedule: view });
  });

  router.delete('/v1/models/:model/schedule', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    if (!(await deleteSchedule(temporal, model))) {
      throw new HttpError(404, 'schedule_not_found', `model ${model} has no schedule`);
    }
    await audited(req, model, 'schedule.delete');
    res.status(204).end();
  });

  router.post('/v1/models/:model/schedule/pause', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const { reason } = parse(pauseBody, req, 'body');
    const view = await change(model, () => pauseSchedule(temporal, model, actorOf(principalOf(req)), reason));
    await audited(req, model, 'schedule.pause', { reason });
    res.json({ schedule: view });
  });

  router.post('/v1/models/:model/schedule/resume', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const { reason } = parse(resumeBody, req, 'body');
    const view = await change(model, () => resumeSchedule(temporal, model, actorOf(principalOf(req)), reason ?? null));
    await audited(req, model, 'schedule.resume', { reason: reason ?? null });
    res.json({ schedule: view });
  });

  router.post('/v1/models/:model/schedule/trigger', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    if (req.is('application/json')) parse(emptyBody, req, 'body'); // nothing to send; anything sent is refused
    const view = await change(model, () => triggerSchedule(temporal, model));
    await audited(req, model, 'schedule.trigger');
    res.status(202).json({ schedule: view });
  });

  router.post('/v1/models/:model/schedule/backfill', requireRole('operator'), async (req, res) => {
    const model = await modelOf(req);
    const { from, to } = parse(backfillBody, req, 'body');
    const view = await change(model, () => backfillSchedule(temporal, model, new Date(from), new Date(to)));
    await audited(req, model, 'schedule.backfill', { from, to });
    res.status(202).json({ schedule: view });
  });

  return router;
}
