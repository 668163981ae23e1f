import type { Client } from '@temporalio/client';
import { Router } from 'express';
import { z } from 'zod';
import type { Db } from '../db/pool';
import { audit } from '../db/queries/audit';
import { listModels, getModel, modelExists } from '../db/queries/models';
import { migrationReport } from '../db/queries/migration';
import { listRuns, runFacts } from '../db/queries/runs';
import { aliasHistory, aliasVersions, listAliases, listVersions } from '../db/queries/registry';
import { slug } from '../domain/model-config';
import { text } from '../ingest/text';
import { RollbackRefused, rollbackModel } from '../temporal/rollback-client';
import { Schedules } from '../temporal/schedule-client';
import { actorOf, assertModelAccess, principalOf, requireRole } from './auth';
import { HttpError } from './errors';
import type { ServingCache } from './serving';
import { parse } from './validate';

const modelParams = z.object({ model: slug }).strict();
const rollbackBody = z.object({ reason: text(2000).optional() }).strict();
const statusQuery = z.object({ model: slug }).strict();
const migrationQuery = z.object({ days: z.coerce.number().int().min(1).max(366).default(30) }).strict();

/** What this router validates with: the OpenAPI document (openapi.ts) is generated from these very objects. */
export const modelsSchemas = { modelParams, rollback: rollbackBody, trainingStatusQuery: statusQuery, migrationQuery };

/** One move of an alias, as the API and the pages show it: who moved it, when, why, from what to what. */
export const aliasMoveView = (h: Awaited<ReturnType<typeof aliasHistory>>[number]) => ({
  alias: h.name,
  from: h.from,
  to: h.to,
  percent: h.percent,
  by: h.actor,
  reason: h.reason,
  at: h.at,
});

export interface ModelsRouterDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  cache: ServingCache;
}

/** The registry, read (`GET /v1/models`, `/v1/models/:model`) and rolled back (`POST .../rollback`). */
export function createModelsRouter({ db, temporal, taskQueue, cache }: ModelsRouterDeps) {
  const router = Router();
  const schedules = new Schedules(temporal, db, { taskQueue });

  router.get('/v1/models', requireRole('app', 'operator'), async (req, res) => {
    const p = principalOf(req);
    const models = await listModels(db, p.models ?? undefined);
    const visible = p.appId ? models.filter((m) => m.app_id === p.appId) : models;
    const aliases = await aliasVersions(
      db,
      visible.map((m) => m.id),
    );
    res.json({
      models: visible.map((m) => ({
        id: m.id,
        app: m.app_id,
        baseModel: m.base_model,
        taskFormat: m.task_format,
        aliases: Object.fromEntries(
          aliases
            .filter((a) => a.model_id === m.id)
            .map((a) => [a.name, { version: a.version, tag: a.ollama_tag, percent: a.percent }]),
        ),
      })),
    });
  });

  router.get('/v1/models/:model', requireRole('app', 'operator'), async (req, res) => {
    const p = principalOf(req);
    const { model } = parse(modelParams, req, 'params');
    assertModelAccess(p, model, 'params.model');
    const m = await getModel(db, model);
    if (!m || (p.appId && m.app_id !== p.appId)) {
      throw new HttpError(404, 'model_not_found', `model ${model} does not exist`, 'params.model');
    }
    const [versions, history, aliases] = await Promise.all([
      listVersions(db, model),
      aliasHistory(db, model),
      listAliases(db, model),
    ]);
    const byId = new Map(versions.map((v) => [v.id, v]));
    res.json({
      model: { id: m.id, app: m.app_id, baseModel: m.base_model, taskFormat: m.task_format, config: m.config },
      aliases: Object.fromEntries(
        aliases.map((a) => [
          a.name,
          { version: byId.get(a.version_id)?.version ?? null, percent: a.percent, since: a.updated_at },
        ]),
      ),
      versions: versions.map((v) => ({
        id: v.id,
        version: v.version,
        status: v.status,
        statusReason: v.status_reason,
        statusAt: v.status_at,
        tag: v.ollama_tag,
        runId: v.run_id,
        datasetId: v.dataset_id,
        createdAt: v.created_at,
        erasureFlags: v.erasure_flags,
        metrics: v.metrics,
      })),
      history: history.map(aliasMoveView),
    });
  });

  /**
   * The migration off the hosted incumbent, over the last `days` days: who serves now, the share of calls answered
   * locally vs by the incumbent per day, fallbacks, each side's latency, tokens and (with the incumbent's prices)
   * what the incumbent cost and what the local share saved, and the canary verdicts of recent runs.
   */
  /**
   * What apps ask of their training loop, in the shape they already use (`trained`, `total_runs`, `last_run`,
   * `last_trained_id`, `recent_runs`), with what serves now (production, canary, the share answered by our versions
   * against the hosted incumbent over the last 7 days) and the next scheduled run.
   */
  router.get('/v1/training-status', requireRole('app', 'operator'), async (req, res) => {
    const p = principalOf(req);
    const { model } = parse(statusQuery, req, 'query');
    assertModelAccess(p, model, 'query.model');
    const m = await getModel(db, model);
    if (!m || (p.appId && m.app_id !== p.appId))
      throw new HttpError(404, 'model_not_found', `model ${model} not found`);
    const [facts, recent, migration, schedule] = await Promise.all([
      runFacts(db, model),
      listRuns(db, { model, limit: 5 }),
      migrationReport(db, m, 7),
      schedules.get(model).catch((err: unknown) => {
        req.log?.warn({ err }, 'schedule lookup failed; training status without it');
        return undefined;
      }),
    ]);
    res.json({
      model,
      trained: facts.lastTrained !== null,
      total_runs: facts.totalRuns,
      last_run: facts.lastRunAt?.toISOString() ?? null,
      last_trained_id: m.watermark_seq,
      last_trained_version: facts.lastTrained
        ? { version: facts.lastTrained.version, status: facts.lastTrained.status, runId: facts.lastTrained.run_id }
        : null,
      recent_runs: recent.map((r) => ({
        id: r.id,
        status: r.status,
        trigger: r.trigger,
        started_at: r.started_at.toISOString(),
        ended_at: r.ended_at?.toISOString() ?? null,
        error: r.error,
      })),
      production: migration.serving.production,
      canary: migration.serving.canary,
      served_last_7_days: {
        calls: migration.totals.calls,
        local: migration.totals.answeredLocally,
        incumbent: migration.totals.answeredByIncumbent,
        local_share: migration.totals.localShare,
      },
      // undefined: Temporal did not answer (the rest is still true); null: no schedule.
      next_run:
        schedule === undefined
          ? { unknown: true }
          : schedule && !schedule.paused
            ? { at: schedule.nextRuns[0] ?? null, schedule: schedule.id }
            : schedule
              ? { at: null, schedule: schedule.id, paused: true } // the note is the operators' (who, why)
              : null,
    });
  });

  router.get('/v1/models/:model/migration', requireRole('app', 'operator'), async (req, res) => {
    const p = principalOf(req);
    const { model } = parse(modelParams, req, 'params');
    const { days } = parse(migrationQuery, req, 'query');
    assertModelAccess(p, model, 'params.model');
    const m = await getModel(db, model);
    if (!m || (p.appId && m.app_id !== p.appId)) {
      throw new HttpError(404, 'model_not_found', `model ${model} does not exist`, 'params.model');
    }
    res.json(await migrationReport(db, m, days));
  });

  router.post('/v1/models/:model/rollback', requireRole('operator'), async (req, res) => {
    const p = principalOf(req);
    const { model } = parse(modelParams, req, 'params');
    const body = parse(rollbackBody, req, 'body');
    if (!(await modelExists(db, model))) {
      throw new HttpError(404, 'model_not_found', `model ${model} does not exist`, 'params.model');
    }
    const reason = body.reason ?? 'rollback requested through the API';
    // Recorded before waiting: the request is on record even if the caller goes away before the answer.
    await audit(db, {
      actor: actorOf(p),
      action: 'model.rollback.request',
      targetType: 'model',
      targetId: model,
      details: { reason },
    });
    let out;
    try {
      out = await rollbackModel(temporal, { model, taskQueue, actor: actorOf(p), reason });
    } catch (err) {
      if (err instanceof RollbackRefused) throw new HttpError(409, 'nothing_to_roll_back', err.message);
      throw err;
    }
    cache.invalidate(model);
    await audit(db, {
      actor: actorOf(p),
      action: 'model.rollback',
      targetType: 'model',
      targetId: model,
      details: { from: out.plan.fromVersionId, to: out.plan.toVersionId, reason },
    });
    res.json({
      model,
      production: out.result.version,
      tag: out.result.tag,
      previous: out.result.previous?.version ?? null,
      reason,
    });
  });

  return router;
}
