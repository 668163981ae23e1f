import { createRequire } from 'node:module';
import path from 'node:path';
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import type { Client } from '@temporalio/client';
import { z } from 'zod';
import type { Db } from '../../db/pool';
import { audit } from '../../db/queries/audit';
import { migrationReport } from '../../db/queries/migration';
import { getModel, listModels } from '../../db/queries/models';
import { aliasHistory, aliasVersions, listAliases, listVersions } from '../../db/queries/registry';
import { listRuns } from '../../db/queries/runs';
import { trainLog } from '../../db/queries/train-log';
import { linesOf } from '../../activities/staging';
import { slug } from '../../domain/model-config';
import type { ChatMessage } from '../../domain/conversation';
import type { BlobStore } from '../../storage/blob-store';
import { Schedules } from '../../temporal/schedule-client';
import { actorOf, verifyKey, type Principal } from '../auth';
import { errorResponse, HttpError } from '../errors';
import { aliasMoveView } from '../models.router';
import { readRun } from '../runs.router';
import { html, page } from './html';
import { endSession, sessionPrincipal, startSession } from './session';
import { indexBody, loginBody, modelBody, runBody, type IndexModel, type SamplePair } from './views';

// The operator pages (/ui): an index of models, a page per run and per model, rendered on the server from what the
// JSON API reads, behind an operator login. Everything they load comes from this origin (our CSS, uPlot from npm,
// our chart script); the CSP says so to the browser.

const ASSETS = path.join(import.meta.dirname, 'assets');
const UPLOT = path.dirname(createRequire(import.meta.url).resolve('uplot'));
const SAMPLES = 5;

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const loginSchema = z
  .object({
    key: z.string().min(1, 'paste an operator key').max(200, 'that is not a tuneloop key'),
    next: z.string().max(2000).optional(),
  })
  .strict();
const runParams = z.object({ id: z.string().regex(/^[A-Za-z0-9-]{1,100}$/, 'expected a run id') }).strict();
const modelParams = z.object({ model: slug }).strict();

export interface PagesDeps {
  db: Db;
  temporal: Client;
  store: BlobStore;
  taskQueue: string;
}

/** Only a path on these pages: never another origin (`//evil`), never a scheme. */
const safeNext = (next: string | undefined) =>
  next && /^\/ui(\/[A-Za-z0-9._~/-]*)?$/.test(next) && !next.includes('//') ? next : '/ui';

declare module 'express-serve-static-core' {
  interface Locals {
    operator?: Principal;
  }
}

export function createPagesRouter(deps: PagesDeps): Router {
  const { db, temporal, store } = deps;
  const schedules = new Schedules(temporal, db, { taskQueue: deps.taskQueue });
  const router = Router();

  router.use('/ui', (_req, res, next) => {
    res.set({
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on our own form posts.
      'Referrer-Policy': 'same-origin',
      'X-Frame-Options': 'DENY',
    });
    next();
  });
  const statics = { index: false, fallthrough: false, maxAge: '1h' } as const;
  router.use('/ui/assets', express.static(ASSETS, statics));
  router.use('/ui/vendor/uplot', express.static(UPLOT, statics));

  const send = (res: Response, status: number, title: string, body: ReturnType<typeof html>, scripts = false) => {
    res
      .status(status)
      .set('Cache-Control', 'no-store')
      .type('html')
      .send(page({ title, operator: res.locals.operator?.name, scripts }, body));
  };
  const login = (res: Response, status: number, next: string, error?: string) =>
    send(res, status, 'Sign in', loginBody({ next, error }));

  // Forms post from our own pages only: a browser says where a POST comes from. Sec-Fetch-Site decides when sent;
  // else Origin's host must be ours. Only the host is compared: behind a TLS proxy the page is https while the API
  // itself is spoken to over http, and the cookie is SameSite=Strict anyway.
  const sameOrigin = (req: Request) => {
    const site = req.get('sec-fetch-site');
    if (site) return site === 'same-origin' || site === 'none';
    const origin = req.get('origin');
    if (!origin) return true;
    try {
      return new URL(origin).host === req.get('host');
    } catch {
      return false;
    }
  };

  router.get('/ui/login', async (req, res) => {
    const next = safeNext(typeof req.query.next === 'string' ? req.query.next : undefined);
    if (await sessionPrincipal(db, req)) return res.redirect(303, next);
    login(res, 200, next);
  });

  router.post(
    '/ui/login',
    express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 10 }),
    async (req, res) => {
      if (!sameOrigin(req)) return login(res, 403, '/ui', 'Sign in from this site’s own login page.');
      const parsed = loginSchema.safeParse(req.body ?? {});
      const next = safeNext(typeof req.body?.next === 'string' ? req.body.next : undefined);
      if (!parsed.success) return login(res, 400, next, parsed.error.issues[0]?.message ?? 'invalid form');
      const p = await verifyKey(db, parsed.data.key.trim());
      if (!p) return login(res, 401, next, 'That key is not valid (unknown, revoked or mistyped).');
      if (p.role !== 'operator' && p.role !== 'admin') {
        return login(res, 403, next, `That is an ${p.role} key; the pages need an operator key.`);
      }
      await startSession(db, res, req, p);
      await audit(db, { actor: actorOf(p), action: 'pages.login', targetType: 'key', targetId: p.keyId, details: {} });
      res.redirect(303, next);
    },
  );

  router.post('/ui/logout', async (req, res) => {
    if (!sameOrigin(req)) return login(res, 403, '/ui', 'Sign out from this site’s own pages.');
    await endSession(db, req, res);
    res.redirect(303, '/ui/login');
  });

  // Every other page needs a session; without one (or with a wrong or expired one) the login page answers, 401.
  router.use('/ui', async (req, res, next) => {
    try {
      const p = await sessionPrincipal(db, req);
      if (!p) return login(res, 401, req.method === 'GET' ? safeNext(req.originalUrl) : '/ui');
      res.locals.operator = p;
      next();
    } catch (err) {
      next(err);
    }
  });

  router.get('/ui', async (req, res) => {
    const models = await listModels(db);
    const aliases = await aliasVersions(
      db,
      models.map((m) => m.id),
    );
    const row = async (m: (typeof models)[number]): Promise<IndexModel> => {
      const [report, last, schedule, history] = await Promise.all([
        migrationReport(db, m, 7),
        listRuns(db, { model: m.id, limit: 1 }),
        schedules.get(m.id).catch((err: unknown) => {
          req.log?.warn({ err }, 'schedule lookup failed');
          return undefined;
        }),
        aliasHistory(db, m.id, 5),
      ]);
      const alias = (name: string) => aliases.find((a) => a.model_id === m.id && a.name === name);
      const canary = alias('canary');
      return {
        id: m.id,
        app: m.app_id,
        baseModel: m.base_model,
        production: alias('production')?.version ?? (report.incumbent ? `incumbent (${report.incumbent.model})` : null),
        canary: canary ? { version: canary.version, percent: canary.percent } : null,
        localShare: report.totals.localShare,
        calls7d: report.totals.calls,
        lastRun: last[0]
          ? { id: last[0].id, status: last[0].status, startedAt: last[0].started_at, endedAt: last[0].ended_at }
          : null,
        nextRun:
          schedule === undefined
            ? undefined
            : schedule && { at: schedule.nextRuns[0] ?? null, paused: schedule.paused },
        history: history.map(aliasMoveView),
      };
    };
    // A few models at a time: an index of a hundred models must not hold every connection of the API's pool.
    const rows: IndexModel[] = [];
    for (let i = 0; i < models.length; i += 4) rows.push(...(await Promise.all(models.slice(i, i + 4).map(row))));
    send(res, 200, 'Models', indexBody(rows));
  });

  router.get('/ui/runs/:id', async (req, res) => {
    const { id } = parseOr404(runParams, req.params);
    const view = await readRun({ db, temporal, log: req.log }, id, res.locals.operator!);
    const evaluate = view.run.stages.find((s) => s.name === 'evaluate');
    const pairsKey = evaluate?.summary?.pairsKey;
    const [log, samples] = await Promise.all([
      trainLog(db, id),
      typeof pairsKey === 'string'
        ? samplePairs(store, pairsKey).catch((err: unknown) => {
            req.log?.warn({ err }, 'sample answers unavailable');
            return null;
          })
        : null,
    ]);
    send(res, 200, `Run ${id.slice(0, 8)}`, runBody({ ...view, log, samples }), true);
  });

  router.get('/ui/models/:model', async (req, res) => {
    const { model } = parseOr404(modelParams, req.params);
    const m = await getModel(db, model);
    if (!m) throw new HttpError(404, 'model_not_found', `model ${model} does not exist`);
    const [versions, history, aliases, report] = await Promise.all([
      listVersions(db, model),
      aliasHistory(db, model),
      listAliases(db, model),
      migrationReport(db, m, 30),
    ]);
    const byId = new Map(versions.map((v) => [v.id, v.version]));
    const body = modelBody({
      model: { id: m.id, app: m.app_id, baseModel: m.base_model, taskFormat: m.task_format },
      aliases: aliases.map((a) => ({
        name: a.name,
        version: byId.get(a.version_id) ?? null,
        percent: a.percent,
        since: a.updated_at,
      })),
      versions: versions.map((v) => ({
        version: v.version,
        status: v.status,
        statusReason: v.status_reason,
        statusAt: v.status_at,
        runId: v.run_id,
        createdAt: v.created_at,
        erasureFlags: v.erasure_flags,
      })),
      history: history.map(aliasMoveView),
      migration: {
        days: report.window.days,
        incumbent: report.incumbent?.model ?? null,
        totals: report.totals,
        daily: report.daily,
      },
    });
    send(res, 200, model, body, true);
  });

  router.use('/ui', (_req, _res, next) => next(new HttpError(404, 'not_found', 'no such page')));
  // Errors as pages, in the API's words and statuses (a database that is down is a 503 with Retry-After, logged).
  router.use('/ui', (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const { status, body, retryAfterS } = errorResponse(err);
    if (retryAfterS !== undefined) res.setHeader('Retry-After', String(retryAfterS));
    if (status >= 500) req.log?.error({ err }, 'page failed');
    const title = status === 404 ? 'Not found' : status >= 500 ? 'Something went wrong' : 'Error';
    send(
      res,
      status,
      title,
      html`<h1>${title}</h1>
        <p>${body.error.message}</p>
        <p><a href="/ui">All models</a></p>`,
    );
  });
  return router;
}

function parseOr404<T extends z.ZodType>(schema: T, v: unknown): z.output<T> {
  const r = schema.safeParse(v);
  if (!r.success) throw new HttpError(404, 'not_found', 'no such page');
  return r.data;
}

/** The first few prompts of the evaluation with both sides' answers (the judge's input; redacted rows). */
async function samplePairs(store: BlobStore, key: string): Promise<SamplePair[]> {
  const out: SamplePair[] = [];
  const stream = await store.get(key);
  try {
    for await (const line of linesOf(stream)) {
      if (!line.trim()) continue;
      const p = JSON.parse(line) as { messages?: ChatMessage[]; candidate?: string; baseline?: string };
      const prompt = [...(p.messages ?? [])].reverse().find((m) => m.role === 'user');
      out.push({
        prompt: typeof prompt?.content === 'string' ? prompt.content : '',
        candidate: p.candidate ?? '',
        baseline: p.baseline ?? '',
      });
      if (out.length >= SAMPLES) break;
    }
  } finally {
    stream.destroy();
  }
  return out;
}
