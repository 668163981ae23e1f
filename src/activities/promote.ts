import type { Db } from '../db/pool';
import { aliasVersionId, getVersion, moveAlias, previousProduction, setVersionStatus } from '../db/queries/registry';
import type { OllamaClient } from '../llm/ollama';
import { releaseCanaryRunner } from './canary';
import { activityLog, type ActivityDeps } from './deps';
import { FailureType, permanentFailure, retryableFailure } from './failures';
import { LockTimeout, withAdvisoryLock } from '../db/locks';
import { withOllamaWrites } from './register';

/** The tag apps that talk to Ollama directly use; promotion and rollback re-point it with a copy. */
export const servedTag = (model: string) => `${model}:latest`;

export interface PromoteInput {
  /** Who asks: `run:<id>` for a pipeline, `operator:<name>` for a rollback. */
  actor: string;
  model: string;
  versionId: string;
  reason: string;
}

export interface PromoteResult {
  version: string;
  tag: string;
  servedTag: string;
  previous: { id: string; version: string } | null;
  /** false when production already pointed at the version (a retry). */
  moved: boolean;
}

/**
 * Makes `versionId` production: the served Ollama tag `<model>:latest` is re-pointed (a copy of the version's
 * tag, made while no other tag write runs), then, in one transaction, the `production` alias moves (with its
 * history), the canary alias is cleared and the statuses follow. The version before stays in Ollama and in the
 * registry (`previous`) for a rollback.
 *
 * Safe to repeat and to interrupt: the API routes by the alias in PostgreSQL to version tags, which are never
 * rewritten, so no request sees a missing model at any point; and if Ollama dies in the middle of the copy
 * (Ollama writes a manifest by truncating and rewriting it), the retry's copy writes `latest` whole again.
 */
export async function makeProduction(
  deps: { db: Db; ollama: OllamaClient },
  input: PromoteInput & {
    /** Production must point at one of these when the move commits (a rollback planned earlier must not land on
     * top of a promotion that happened since). */
    expectProduction?: (string | null)[];
    /** Statuses the version must not have (a pipeline never promotes a version an operator rolled back). */
    refuse?: string[];
  },
): Promise<PromoteResult> {
  // One promotion or rollback of a model at a time, from the tag copy to the alias commit: otherwise two could
  // interleave and leave `<model>:latest` on one version while the alias names the other.
  try {
    const r = await withAdvisoryLock(deps.db, `tuneloop:serving:${input.model}`, { waitMs: 60_000 }, () =>
      makeProductionLocked(deps, input),
    );
    if (!r.ran) throw new Error('unreachable: a waiting lock runs or throws');
    return r.value;
  } catch (err) {
    if (err instanceof LockTimeout) throw retryableFailure(FailureType.OLLAMA_UNAVAILABLE, `${err.message}: busy`);
    throw err;
  }
}

async function makeProductionLocked(
  deps: { db: Db; ollama: OllamaClient },
  input: PromoteInput & { expectProduction?: (string | null)[]; refuse?: string[] },
): Promise<PromoteResult> {
  const version = await getVersion(deps.db, input.versionId);
  if (!version || version.model_id !== input.model) {
    throw permanentFailure(FailureType.INVALID_STATE, `version ${input.versionId} is not a version of ${input.model}`);
  }
  if (!version.ollama_tag) {
    throw permanentFailure(FailureType.INVALID_STATE, `version ${version.version} was never registered in Ollama`);
  }
  if (input.refuse?.includes(version.status)) {
    throw permanentFailure(
      FailureType.INVALID_STATE,
      `version ${version.version} is ${version.status}${version.status_reason ? ` (${version.status_reason})` : ''}`,
    );
  }
  if (!(await deps.ollama.show(version.ollama_tag))) {
    throw permanentFailure(
      FailureType.INVALID_STATE,
      `Ollama at ${deps.ollama.host} has no ${version.ollama_tag}: register the version again before serving it`,
    );
  }
  await withOllamaWrites(deps.db, () => deps.ollama.copy(version.ollama_tag!, servedTag(input.model)));
  const { moved, from } = await deps.db.transaction().execute(async (trx) => {
    if (input.expectProduction) {
      const current = await aliasVersionId(trx, input.model, 'production');
      if (current !== input.versionId && !input.expectProduction.includes(current)) {
        throw permanentFailure(
          FailureType.INVALID_STATE,
          `production of ${input.model} moved since this was planned; nothing was changed`,
        );
      }
    }
    const r = await moveAlias(trx, {
      model: input.model,
      name: 'production',
      versionId: input.versionId,
      percent: null,
      actor: input.actor,
      reason: input.reason,
    });
    const canary = await aliasVersionId(trx, input.model, 'canary');
    if (canary) {
      await moveAlias(trx, {
        model: input.model,
        name: 'canary',
        versionId: null,
        percent: null,
        actor: input.actor,
        reason: canary === input.versionId ? 'promoted to production' : `replaced: ${input.reason}`,
      });
      if (canary !== input.versionId) {
        await setVersionStatus(trx, canary, 'rolled_back', `production moved: ${input.reason}`);
      }
    }
    await setVersionStatus(trx, input.versionId, 'production', input.reason);
    if (r.moved && r.from && r.from !== input.versionId) {
      await setVersionStatus(trx, r.from, 'previous', `replaced by ${version.version}`);
    }
    return r;
  });
  const previous = from && from !== input.versionId ? await getVersion(deps.db, from) : undefined;
  return {
    version: version.version,
    tag: version.ollama_tag,
    servedTag: servedTag(input.model),
    previous: previous ? { id: previous.id, version: previous.version } : null,
    moved,
  };
}

export interface RollbackPlan {
  model: string;
  fromVersionId: string;
  toVersionId: string;
}

export function createPromoteActivities(deps: ActivityDeps) {
  return {
    /** promote: the candidate that passed its canary becomes production (see makeProduction). */
    async promote(input: { runId: string; model: string; versionId: string }): Promise<PromoteResult> {
      const r = await makeProduction(deps, {
        actor: `run:${input.runId}`,
        model: input.model,
        versionId: input.versionId,
        reason: 'passed evaluation and canary',
        // An operator's rollback of the canary, or a failed parity check, is final for this run.
        refuse: ['rolled_back', 'rejected', 'failed', 'previous'],
      });
      const log = activityLog(deps, { model: input.model, runId: input.runId });
      log.info(r, 'promoted');
      await releaseCanaryRunner(deps, input.versionId, log);
      return r;
    },

    /**
     * What a rollback will do, fixed once (the workflow records it): from the current production version to the
     * one production pointed at before. A retried rollback then cannot go back one step too far.
     */
    async planRollback(input: { model: string }): Promise<RollbackPlan> {
      const current = await aliasVersionId(deps.db, input.model, 'production');
      if (!current) throw permanentFailure(FailureType.INVALID_STATE, `model ${input.model} has no production version`);
      const to = await previousProduction(deps.db, input.model);
      if (!to) {
        throw permanentFailure(FailureType.INVALID_STATE, `model ${input.model} has no earlier production version`);
      }
      return { model: input.model, fromVersionId: current, toVersionId: to };
    },

    /** Puts the previous production version back (the plan's), in one step; the rolled-back one keeps its tag. */
    async rollback(input: RollbackPlan & { actor: string; reason: string }): Promise<PromoteResult> {
      const r = await makeProduction(deps, {
        actor: input.actor,
        model: input.model,
        versionId: input.toVersionId,
        reason: `rollback: ${input.reason}`,
        expectProduction: [input.fromVersionId],
      });
      const from = await getVersion(deps.db, input.fromVersionId);
      if (from && from.status !== 'production') {
        await setVersionStatus(deps.db, input.fromVersionId, 'rolled_back', input.reason);
      }
      activityLog(deps, { model: input.model }).warn({ ...r, actor: input.actor }, 'rolled back');
      return r;
    },
  };
}
