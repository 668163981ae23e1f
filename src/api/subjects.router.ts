import type { Client } from '@temporalio/client';
import { Router } from 'express';
import { z } from 'zod';
import type { ErasureDataset } from '../db/database';
import type { Db } from '../db/pool';
import { audit } from '../db/queries/audit';
import { eraseSubjectRecords, getErasure } from '../db/queries/erasure';
import { setConsent } from '../db/queries/interactions';
import { appExists } from '../db/queries/models';
import { slug } from '../domain/model-config';
import { externalId, text } from '../ingest/text';
import { startErasure } from '../temporal/erasure-client';
import { actorOf, principalOf, requireRole, type Principal } from './auth';
import { HttpError } from './errors';
import { parse } from './validate';

const consentSchema = z.object({ training: z.boolean(), policyVersion: text(100) }).strict();
const paramsSchema = z.object({ id: externalId }).strict();
const querySchema = z.object({ app: slug.optional() }).strict();
const erasureParams = z.object({ id: z.uuid() }).strict();

/** What this router validates with: the OpenAPI document (openapi.ts) is generated from these very objects. */
export const subjectsSchemas = {
  consent: consentSchema,
  subjectParams: paramsSchema,
  appQuery: querySchema,
  erasureParams,
};

export interface SubjectsRouterDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  /** How long DELETE waits for the datasets to be rewritten before answering 202 (the erasure goes on). */
  erasureWaitMs?: number;
}

/** Consent is per subject of an app: an app key speaks for its own app; an admin names the app. */
export function createSubjectsRouter({ db, temporal, taskQueue, erasureWaitMs = 30_000 }: SubjectsRouterDeps) {
  const router = Router();

  async function appOf(p: Principal, app: string | undefined): Promise<string> {
    const appId = p.appId ?? app;
    if (!appId)
      throw new HttpError(400, 'invalid_request', 'query.app: required for keys not bound to an app', 'query.app');
    if (p.appId && app && app !== p.appId)
      throw new HttpError(403, 'forbidden', `app ${app} is not accessible with this key`, 'query.app');
    if (!(await appExists(db, appId)))
      throw new HttpError(404, 'app_not_found', `app ${appId} does not exist`, 'query.app');
    return appId;
  }

  router.put('/v1/subjects/:id/consent', requireRole('app'), async (req, res) => {
    const p = principalOf(req);
    const { id } = parse(paramsSchema, req, 'params');
    const { app } = parse(querySchema, req, 'query');
    const body = parse(consentSchema, req, 'body');
    const appId = await appOf(p, app);

    const subject = await db.transaction().execute(async (trx) => {
      const row = await setConsent(trx, {
        appId,
        subject: id,
        training: body.training,
        policyVersion: body.policyVersion,
      });
      await audit(trx, {
        actor: actorOf(p),
        action: 'consent.set',
        targetType: 'subject',
        targetId: row.id,
        details: { app: appId, training: body.training, policyVersion: body.policyVersion },
      });
      return row;
    });
    res.json({
      subject: id,
      app: appId,
      training: subject.training_consent,
      policyVersion: subject.consent_policy_version,
      updatedAt: subject.consent_updated_at,
    });
  });

  /**
   * Erasure (admin). PostgreSQL first, in one transaction: from the moment this commits, no run can use the
   * subject's data. Then the stored datasets that held their rows are rewritten by the EraseSubject workflow;
   * the answer waits for it (up to erasureWaitMs, then 202 with where to look) and lists what was touched.
   */
  router.delete('/v1/subjects/:id', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const { id } = parse(paramsSchema, req, 'params');
    const { app } = parse(querySchema, req, 'query');
    const appId = await appOf(p, app);
    const record = await db
      .transaction()
      .execute((trx) => eraseSubjectRecords(trx, { appId, subject: id, actor: actorOf(p) }));
    if (!record) throw new HttpError(404, 'subject_not_found', `app ${appId} has no subject ${id}`);
    let done = record.status === 'done';
    if (!done) {
      const wf = await startErasure(temporal, { erasureId: record.id, taskQueue });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), erasureWaitMs)));
      done = await Promise.race([wf.result().then(() => true), timeout]).finally(() => clearTimeout(timer));
    }
    const view = await erasureView(db, record.id);
    if (!done) res.status(202).location(`/v1/erasures/${record.id}`);
    res.json(view);
  });

  router.get('/v1/erasures/:id', requireRole('admin'), async (req, res) => {
    const { id } = parse(erasureParams, req, 'params');
    const view = await erasureView(db, id);
    if (!view) throw new HttpError(404, 'erasure_not_found', `erasure ${id} not found`);
    res.json(view);
  });

  return router;
}

async function erasureView(db: Db, id: string) {
  const e = await getErasure(db, id);
  if (!e) return null;
  return {
    erasure: {
      id: e.id,
      app: e.app_id,
      status: e.status,
      requestedBy: e.requested_by,
      createdAt: e.created_at,
      completedAt: e.completed_at,
      interactionsDeleted: e.interactions,
      feedbackDeleted: e.feedback,
      datasets: e.datasets.map((d: ErasureDataset) => ({
        id: d.datasetId,
        rowsRemoved: d.rows.length,
        rewritten: d.rewritten,
        objects: d.objects,
      })),
      // Trained on data that included the subject: for the operator to retrain or retire.
      modelVersionsFlagged: e.model_versions,
    },
  };
}
