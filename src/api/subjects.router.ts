import { Router } from 'express';
import { z } from 'zod';
import type { Db } from '../db/pool';
import { audit } from '../db/queries/audit';
import { setConsent } from '../db/queries/interactions';
import { slug } from '../domain/model-config';
import { actorOf, principalOf, requireRole } from './auth';
import { HttpError } from './errors';
import { parse } from './validate';

const consentSchema = z.object({ training: z.boolean(), policyVersion: z.string().min(1).max(100) }).strict();
const paramsSchema = z.object({ id: z.string().min(1).max(200) }).strict();
const querySchema = z.object({ app: slug.optional() }).strict();

/** Consent is per subject of an app: an app key speaks for its own app; an admin names the app. */
export function createSubjectsRouter({ db }: { db: Db }) {
  const router = Router();

  router.put('/v1/subjects/:id/consent', requireRole('app'), async (req, res) => {
    const p = principalOf(req);
    const { id } = parse(paramsSchema, req, 'params');
    const { app } = parse(querySchema, req, 'query');
    const body = parse(consentSchema, req, 'body');
    const appId = p.appId ?? app;
    if (!appId)
      throw new HttpError(400, 'invalid_request', 'query.app: required for keys not bound to an app', 'query.app');
    if (p.appId && app && app !== p.appId)
      throw new HttpError(403, 'forbidden', `app ${app} is not accessible with this key`, 'query.app');
    const exists = await db.selectFrom('apps').select('id').where('id', '=', appId).executeTakeFirst();
    if (!exists) throw new HttpError(404, 'app_not_found', `app ${appId} does not exist`, 'query.app');

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

  return router;
}
