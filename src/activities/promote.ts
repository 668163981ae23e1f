import type { Db } from '../db/pool';
import { getVersion, moveAlias, previousProduction, setVersionStatus } from '../db/queries/registry';
import type { OllamaClient } from '../llm/ollama';
import { activityLog, type ActivityDeps } from './deps';
import { FailureType, permanentFailure } from './failures';
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
export async function makeProduction(deps: { db: Db; ollama: OllamaClient }, input: PromoteInput) {
  const version = await getVersion(deps.db, input.versionId);
  if (!version || version.model_id !== input.model) {
    throw permanentFailure(FailureType.INVALID_STATE, `version ${input.versionId} is not a version of ${input.model}`);
  }
  if (!version.ollama_tag) {
    throw permanentFailure(FailureType.INVALID_STATE, `version ${version.version} was never registered in Ollama`);
  }
  if (!(await deps.ollama.show(version.ollama_tag))) {
    throw permanentFailure(
      FailureType.INVALID_STATE,
      `Ollama at ${deps.ollama.host} has no ${version.ollama_tag}: register the version again before serving it`,
    );
  }
  await withOllamaWrites(deps.db, deps.ollama, () => deps.ollama.copy(version.ollama_tag!, servedTag(input.model)));
  const { moved, from } = await deps.db.transaction().execute(async (trx) => {
    const r = await moveAlias(trx, {
      model: input.model,
      name: 'production',
      versionId: input.versionId,
      percent: null,
      actor: input.actor,
      reason: input.reason,
    });
    const canary = await trx
      .selectFrom('aliases')
      .select('version_id')
      .where('model_id', '=', input.model)
      .where('name', '=', 'canary')
      .executeTakeFirst();
    if (canary) {
      await moveAlias(trx, {
        model: input.model,
        name: 'canary',
        versionId: null,
        percent: null,
        actor: input.actor,
        reason: canary.version_id === input.versionId ? 'promoted to production' : `replaced: ${input.reason}`,
      });
      if (canary.version_id !== input.versionId) {
        await setVersionStatus(trx, canary.version_id, 'rolled_back', `production moved: ${input.reason}`);
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
  } satisfies PromoteResult;
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
      });
      activityLog(deps, { model: input.model, runId: input.runId }).info(r, 'promoted');
      return r;
    },

    /**
     * What a rollback will do, fixed once (the workflow records it): from the current production version to the
     * one production pointed at before. A retried rollback then cannot go back one step too far.
     */
    async planRollback(input: { model: string }): Promise<RollbackPlan> {
      const current = await deps.db
        .selectFrom('aliases')
        .select('version_id')
        .where('model_id', '=', input.model)
        .where('name', '=', 'production')
        .executeTakeFirst();
      if (!current) throw permanentFailure(FailureType.INVALID_STATE, `model ${input.model} has no production version`);
      const to = await previousProduction(deps.db, input.model);
      if (!to) {
        throw permanentFailure(FailureType.INVALID_STATE, `model ${input.model} has no earlier production version`);
      }
      return { model: input.model, fromVersionId: current.version_id, toVersionId: to };
    },

    /** Puts the previous production version back (the plan's), in one step; the rolled-back one keeps its tag. */
    async rollback(input: RollbackPlan & { actor: string; reason: string }): Promise<PromoteResult> {
      const r = await makeProduction(deps, {
        actor: input.actor,
        model: input.model,
        versionId: input.toVersionId,
        reason: `rollback: ${input.reason}`,
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
