import { Context } from '@temporalio/activity';
import { aliasVersionId, getVersion, lastMoveAt, moveAlias, setVersionStatus } from '../db/queries/registry';
import { setPairOutcome, shadowStats, unjudgedPairs } from '../db/queries/shadow';
import type { ChatMessage } from '../domain/conversation';
import { parsePipelineConfig } from '../domain/model-config';
import { judgeShadow, type ShadowVerdict } from '../domain/shadow';
import { releaseCanaryRunner } from './canary';
import { activityLog, type ActivityDeps } from './deps';
import { FailureType, permanentFailure } from './failures';
import { judgePair } from './judge';
import { requireModel } from './lookups';

export interface ShadowInput {
  runId: string;
  model: string;
  versionId: string;
}

const actorOf = (runId: string) => `run:${runId}`;

/**
 * The shadow stage's moves and its verdict. The `shadow` alias points the API at the candidate: for a share of
 * production's calls the candidate answers too, in the background (src/api/shadow.ts), and the pairs are judged
 * here, both orders, by the model's judge.
 */
export function createShadowActivities(deps: ActivityDeps) {
  return {
    /** Points the `shadow` alias at the candidate; returns when that happened (the window's start). */
    async setShadow(input: ShadowInput): Promise<{ since: string }> {
      const version = await getVersion(deps.db, input.versionId);
      if (!version?.ollama_tag) {
        throw permanentFailure(FailureType.INVALID_STATE, `version ${input.versionId} is not registered in Ollama`);
      }
      if (version.status !== 'registered') {
        throw permanentFailure(FailureType.INVALID_STATE, `version ${version.version} is ${version.status}`);
      }
      const since = await deps.db.transaction().execute(async (trx) => {
        await moveAlias(trx, {
          model: input.model,
          name: 'shadow',
          versionId: input.versionId,
          percent: null,
          actor: actorOf(input.runId),
          reason: 'shadow: answers a share of production calls in the background',
        });
        return lastMoveAt(trx, { model: input.model, name: 'shadow', versionId: input.versionId, percent: null });
      });
      activityLog(deps, { model: input.model, runId: input.runId }).info(
        { version: version.version },
        'shadow started',
      );
      return { since: new Date(since).toISOString() };
    },

    /**
     * Judges the pairs not judged yet (at most the config's `maxJudged` in all, each in both orders), then the
     * shadow's verdict on everything since the window began. Without a judge the verdict stands on errors and
     * latency alone.
     */
    async compareShadow(input: ShadowInput & { since: string }): Promise<ShadowVerdict> {
      const ctx = Context.current();
      const model = await requireModel(deps.db, input.model);
      const config = parsePipelineConfig(model.config);
      const since = new Date(input.since);
      if ((await aliasVersionId(deps.db, input.model, 'shadow')) !== input.versionId) {
        throw permanentFailure(
          FailureType.INVALID_STATE,
          'the shadow alias no longer points at this version (an operator or another run moved it)',
        );
      }
      const judge = config.judge;
      if (judge) {
        if (!(await deps.ollama.show(judge.model, ctx.cancellationSignal))) {
          throw permanentFailure(
            FailureType.CONFIG_INVALID,
            `judge model ${judge.model} is not in Ollama at ${deps.ollama.host}: add it there first`,
          );
        }
        const before = await shadowStats(deps.db, input.versionId, since);
        const budget = Math.max(0, config.shadow.maxJudged - (before.wins + before.losses + before.ties));
        for (const p of await unjudgedPairs(deps.db, input.versionId, since, budget)) {
          const { outcome } = await judgePair(
            deps.ollama,
            judge,
            p.messages as ChatMessage[],
            p.candidate_answer ?? '',
            p.production_answer ?? '',
            ctx.cancellationSignal,
            false,
          );
          await setPairOutcome(deps.db, p.id, outcome); // only the outcome: a judge's reason may quote the chat
          ctx.heartbeat();
        }
      }
      const verdict = judgeShadow(await shadowStats(deps.db, input.versionId, since), config.shadow, !!judge);
      activityLog(deps, { model: input.model, runId: input.runId }).info({ ...verdict }, 'shadow compared');
      return verdict;
    },

    /** Takes the shadow alias off the candidate; `rolledBack` marks the version rolled back with the reason. */
    async endShadow(input: ShadowInput & { reason: string; rolledBack: boolean }): Promise<void> {
      await deps.db.transaction().execute(async (trx) => {
        if ((await aliasVersionId(trx, input.model, 'shadow')) === input.versionId) {
          await moveAlias(trx, {
            model: input.model,
            name: 'shadow',
            versionId: null,
            percent: null,
            actor: actorOf(input.runId),
            reason: input.reason,
          });
        }
        const version = await getVersion(trx, input.versionId);
        if (input.rolledBack && version && version.status === 'registered') {
          await setVersionStatus(trx, input.versionId, 'rolled_back', input.reason);
        }
      });
      const log = activityLog(deps, { model: input.model, runId: input.runId });
      log.info({ reason: input.reason }, 'shadow ended');
      if (input.rolledBack) await releaseCanaryRunner(deps, input.versionId, log);
    },
  };
}
