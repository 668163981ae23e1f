import { performance } from 'node:perf_hooks';
import { aliasStats } from '../db/queries/serving';
import {
  aliasVersionId,
  getVersion,
  lastMoveAt,
  moveAlias,
  servingAliases,
  setVersionStatus,
} from '../db/queries/registry';
import { judgeCanary, type CanaryVerdict } from '../domain/canary';
import { parsePipelineConfig } from '../domain/model-config';
import type { Logger } from '../log';
import { activityLog, cancellationSignal, heartbeat, type ActivityDeps } from './deps';
import { FailureType, permanentFailure } from './failures';
import { requireModel } from './lookups';

export interface CanaryStepInput {
  runId: string;
  model: string;
  versionId: string;
  percent: number;
}

export interface CompareInput {
  runId: string;
  model: string;
  versionId: string;
  /** ISO time the step began: the window compared. */
  since: string;
}

export interface EndCanaryInput {
  runId: string;
  model: string;
  versionId: string;
  reason: string;
}

const actorOf = (runId: string) => `run:${runId}`;

/** How long a canary's model may take to load before its first subjects are sent to it. */
const WARM_TIMEOUT_MS = 90_000;

/**
 * Loads the canary's model before subjects are routed to it, so the first of them do not wait for the load and
 * the step's p95 latency compares answers, not a load. Best effort: a model that cannot load is left to the
 * step's comparison (its errors count against the canary), not failed here. Loaded in the canary's Ollama: in
 * production's, an adapter on production's base would take production's runner (Ollama keeps one per weights file).
 */
async function warm(deps: ActivityDeps, tag: string, log: Logger) {
  const t0 = performance.now();
  const signal = cancellationSignal();
  // Heartbeats while loading: they are how a cancellation of the run reaches this activity.
  const beat = setInterval(() => {
    try {
      heartbeat({ loading: tag });
    } catch {
      // cancelled: the load's signal ends it
    }
  }, 5_000);
  try {
    await (deps.canaryOllama ?? deps.ollama).load(tag, { signal, timeoutMs: WARM_TIMEOUT_MS });
    log.info({ tag, loadMs: Math.round(performance.now() - t0) }, 'canary model loaded');
  } catch (err) {
    if (signal?.aborted) throw err;
    log.warn({ tag, err: (err as Error).message }, 'canary model could not be loaded ahead of its step');
  } finally {
    clearInterval(beat);
  }
}

/**
 * Unloads a version from the canary's own Ollama once the canary is over (ended or promoted): that server answers
 * nothing else, so its runner only holds memory. Never from production's Ollama, where Ollama's one runner per
 * weights file may be production's own. Best effort.
 */
export async function releaseCanaryRunner(deps: ActivityDeps, versionId: string, log: Logger) {
  if (!deps.canaryOllama || deps.canaryOllama === deps.ollama) return;
  const version = await getVersion(deps.db, versionId);
  if (!version?.ollama_tag) return;
  await deps.canaryOllama
    .load(version.ollama_tag, { keepAlive: 0, timeoutMs: 30_000 })
    .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'canary model not unloaded'));
}

export function createCanaryActivities(deps: ActivityDeps) {
  return {
    /**
     * Points the `canary` alias at the version with `percent` % of subjects (routing is by a hash of the subject,
     * so raising the share only moves subjects onto the canary). Returns when the step began, for its window; a
     * retry of a step already set returns the same time.
     */
    async setCanary(input: CanaryStepInput): Promise<{ since: string }> {
      const version = await getVersion(deps.db, input.versionId);
      if (!version?.ollama_tag) {
        throw permanentFailure(FailureType.INVALID_STATE, `version ${input.versionId} is not registered in Ollama`);
      }
      if (!['registered', 'canary'].includes(version.status)) {
        // e.g. an operator rolled production back while this canary ran, which takes the canary out for good
        throw permanentFailure(
          FailureType.INVALID_STATE,
          `version ${version.version} is ${version.status}${version.status_reason ? ` (${version.status_reason})` : ''}`,
        );
      }
      const log = activityLog(deps, { model: input.model, runId: input.runId });
      await warm(deps, version.ollama_tag, log);
      const since = await deps.db.transaction().execute(async (trx) => {
        await moveAlias(trx, {
          model: input.model,
          name: 'canary',
          versionId: input.versionId,
          percent: input.percent,
          actor: actorOf(input.runId),
          reason: `canary step ${input.percent} %`,
        });
        await setVersionStatus(trx, input.versionId, 'canary', `${input.percent} % of subjects`);
        return lastMoveAt(trx, {
          model: input.model,
          name: 'canary',
          versionId: input.versionId,
          percent: input.percent,
        });
      });
      log.info({ version: version.version, percent: input.percent }, 'canary step');
      return { since: new Date(since).toISOString() };
    },

    /** Which version serves the model now (production), if any, and whether it has an incumbent behind it. */
    async servingState(input: {
      model: string;
    }): Promise<{ production: { versionId: string; version: string } | null; incumbent: boolean }> {
      const aliases = await servingAliases(deps.db, input.model);
      const model = await requireModel(deps.db, input.model);
      const p = aliases.production;
      return {
        production: p ? { versionId: p.versionId, version: p.version } : null,
        incumbent: parsePipelineConfig(model.config).incumbent !== undefined,
      };
    },

    /**
     * The canary against production since the step began, judged by the model's margins. Before a local version is
     * promoted, production is the incumbent: the calls it answered as production (version_id null).
     */
    async compareCanary(input: CompareInput): Promise<CanaryVerdict> {
      const model = await requireModel(deps.db, input.model);
      const config = parsePipelineConfig(model.config);
      const c = { ...config.canary, incumbent: config.incumbent !== undefined };
      const since = new Date(input.since);
      const aliases = await servingAliases(deps.db, input.model);
      const canary = await aliasStats(deps.db, input.model, 'canary', input.versionId, since);
      if (aliases.canary?.versionId !== input.versionId) {
        const empty = { ...canary };
        return {
          verdict: 'fail',
          reasons: ['the canary alias no longer points at this version (an operator or another run moved it)'],
          canary: empty,
          production: empty,
        };
      }
      const production =
        aliases.production || c.incumbent
          ? await aliasStats(deps.db, input.model, 'production', aliases.production?.versionId ?? null, since)
          : { calls: 0, errors: 0, p95LatencyMs: null, feedback: 0, thumbsDown: 0, schemaChecked: 0, schemaValid: 0 };
      const verdict = judgeCanary(canary, production, c.margins, { minCalls: c.minCalls, minFeedback: c.minFeedback });
      activityLog(deps, { model: input.model, runId: input.runId }).info(
        { verdict: verdict.verdict, reasons: verdict.reasons, canary, production },
        'canary compared',
      );
      return verdict;
    },

    /**
     * Takes the canary out (its subjects go back to production), and the shadow alias if it still points at the
     * version (a run that ends mid-shadow), and marks the version rolled back.
     */
    async endCanary(input: EndCanaryInput): Promise<void> {
      await deps.db.transaction().execute(async (trx) => {
        for (const name of ['canary', 'shadow'] as const) {
          if ((await aliasVersionId(trx, input.model, name)) !== input.versionId) continue;
          await moveAlias(trx, {
            model: input.model,
            name,
            versionId: null,
            percent: null,
            actor: actorOf(input.runId),
            reason: input.reason,
          });
        }
        const version = await getVersion(trx, input.versionId);
        if (version && version.status !== 'production') {
          await setVersionStatus(trx, input.versionId, 'rolled_back', input.reason);
        }
      });
      const log = activityLog(deps, { model: input.model, runId: input.runId });
      log.warn({ reason: input.reason }, 'canary ended');
      await releaseCanaryRunner(deps, input.versionId, log);
    },
  };
}
