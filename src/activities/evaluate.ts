import { createReadStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { SplitSummary } from '../dataset/manifest';
import { getVersion, mergeVersionMetrics, productionVersion } from '../db/queries/registry';
import { promptOf, type ChatMessage } from '../domain/conversation';
import { answerStats, styleRate, type AnswerStats } from '../domain/evaluation';
import { compilePattern } from '../llm/json-schema';
import { parsePipelineConfig } from '../domain/model-config';
import { sha256Hex } from '../dataset/rows';
import { downloadDir, ensureLocalCopy } from './artifacts';
import { putDerivedLines } from './derived';
import { activityLog } from './deps';
import { FailureType, permanentFailure } from './failures';
import { requireModel } from './lookups';
import { linesOf } from './staging';
import { resolveBaseModel, type GpuActivityDeps } from './train';
import { adapterFitsBase } from '../domain/base-fit';
import { runTrainerCommand } from './trainer-command';
import type { TrainerEvent } from './trainer-process';

export interface EvaluateInput {
  runId: string;
  model: string;
  versionId: string;
  validation: SplitSummary;
}

export interface VersionMetrics {
  loss: number | null;
  perplexity: number | null;
  tokens: number | null;
  jsonValidRate?: number | null;
  /** With a house style (the model config's `style`): the share of this side's answers that follow it. */
  styleRate?: number | null;
}

export interface EvaluateSummary {
  candidate: VersionMetrics;
  /** `production` when a version is in production, else `base`. */
  baselineName: 'production' | 'base';
  baseline: VersionMetrics;
  /**
   * The judge's input: one JSONL line per validation prompt, {id, row, messages, candidate, baseline} with both
   * sides' greedy answers; a derived object of the dataset (erasure reaches it).
   */
  pairsKey: string | null;
  prompts: number;
  /** Lengths and refusals of both sides' answers to the same prompts. */
  answers: { candidate: AnswerStats; baseline: AnswerStats } | null;
}

export function createEvaluateActivities(deps: GpuActivityDeps) {
  return {
    /**
     * evaluate: held-out loss and perplexity of the candidate and of what it would replace (the production
     * version, or the base model on the first run) on the validation split, and greedy generations of both for
     * the judge. Idempotent: the same inputs give the same numbers and the same generations object.
     */
    async evaluate(input: EvaluateInput): Promise<EvaluateSummary> {
      const ctx = Context.current();
      const log = activityLog(deps, { model: input.model, runId: input.runId });
      const model = await requireModel(deps.db, input.model);
      const config = parsePipelineConfig(model.config);
      const base = await resolveBaseModel(model.base_model, deps.trainer.modelsDir);
      const candidate = await getVersion(deps.db, input.versionId);
      if (!candidate?.adapter_key) {
        throw permanentFailure(FailureType.DATASET_INVALID, `model version ${input.versionId} has no adapter`);
      }
      if (!candidate.dataset_id) {
        throw permanentFailure(FailureType.INVALID_STATE, `model version ${input.versionId} names no dataset`);
      }
      const datasetId = candidate.dataset_id;
      const production = await productionVersion(deps.db, input.model);

      const work = path.join(deps.trainer.workDir, 'eval', input.runId);
      await mkdir(work, { recursive: true });
      try {
        const versions: Record<string, string | null> = {};
        versions.candidate = path.join(work, 'candidate');
        await downloadDir(deps.store, candidate.adapter_key, versions.candidate);
        // Production is the baseline when its adapter fits this base; after a change of base, the base is.
        const productionAdapter =
          production?.adapter_key && adapterFitsBase(production, model.base_model) ? production.adapter_key : null;
        const baselineName = productionAdapter ? 'production' : 'base';
        if (productionAdapter) {
          versions.production = path.join(work, 'production');
          await downloadDir(deps.store, productionAdapter, versions.production);
        } else {
          versions.base = null;
        }
        ctx.heartbeat({ phase: 'downloaded' });

        let validationFile: string | null = null;
        let promptsFile: string | null = null;
        const promptMessages = new Map<string, { row: string; messages: ChatMessage[] }>();
        let prompts = 0;
        if (input.validation.count > 0) {
          validationFile = path.join(work, 'validation.jsonl');
          await ensureLocalCopy(deps.store, input.validation.key, validationFile, input.validation.sha256);
          const lines: string[] = [];
          // Validation prompts the generations are made for: each row's conversation up to its last assistant turn.
          const want = Math.max(config.evaluation.prompts, config.judge?.maxPairs ?? 0);
          for await (const line of linesOf(createReadStream(validationFile))) {
            if (lines.length >= want) break;
            const messages = promptOf((JSON.parse(line) as { messages: ChatMessage[] }).messages);
            if (messages) {
              const prompt = { id: `v${lines.length + 1}`, messages };
              promptMessages.set(prompt.id, { row: sha256Hex(line), messages });
              lines.push(JSON.stringify(prompt));
            }
          }
          prompts = lines.length;
          if (prompts > 0) {
            promptsFile = path.join(work, 'prompts.jsonl');
            await writeFile(promptsFile, lines.join('\n') + '\n');
          }
        }
        const generations = path.join(work, 'generations.jsonl');
        const configFile = path.join(work, 'eval-config.json');
        await writeFile(
          configFile,
          JSON.stringify(
            {
              base_model: base,
              versions,
              validation_file: validationFile,
              prompts_file: promptsFile,
              output_file: generations,
              max_new_tokens: config.evaluation.maxNewTokens,
              batch_size: config.evaluation.batchSize,
              max_length: config.training.maxLength,
              output_schema: model.output_schema ?? null,
            },
            null,
            2,
          ),
        );

        const evals = new Map<string, TrainerEvent>();
        await runTrainerCommand({
          trainer: deps.trainer,
          command: 'evaluate',
          args: ['--config', configFile],
          cwd: work,
          log,
          onEvent: (e) => {
            if (e.event === 'eval') {
              evals.set(String(e.version), e);
              ctx.heartbeat({ phase: 'evaluated', version: e.version });
            }
          },
          heartbeat: { everyMs: 10_000, details: () => ({ phase: 'evaluating', versions: [...evals.keys()] }) },
        });
        const metricsOf = (name: string): VersionMetrics => {
          const e = evals.get(name);
          const num = (v: unknown) => (typeof v === 'number' ? v : null);
          return {
            loss: num(e?.loss),
            perplexity: num(e?.perplexity),
            tokens: num(e?.tokens),
            ...(e && 'json_valid_rate' in e ? { jsonValidRate: num(e.json_valid_rate) } : {}),
          };
        };
        let pairsKey: string | null = null;
        let answers: EvaluateSummary['answers'] = null;
        let styleRates: Record<'candidate' | 'baseline', number | null> | null = null;
        if (promptsFile) {
          const outputs = new Map<string, { candidate?: string; baseline?: string }>();
          for await (const line of linesOf(createReadStream(generations))) {
            const g = JSON.parse(line) as { version: string; id: string; output: string };
            const side = g.version === 'candidate' ? 'candidate' : g.version === baselineName ? 'baseline' : null;
            if (side) outputs.set(g.id, { ...outputs.get(g.id), [side]: g.output });
          }
          const pairs = [...promptMessages].map(([id, { row, messages }]) => ({
            id,
            row,
            messages,
            candidate: outputs.get(id)?.candidate ?? '',
            baseline: outputs.get(id)?.baseline ?? '',
          }));
          const sides = { candidate: pairs.map((p) => p.candidate), baseline: pairs.map((p) => p.baseline) };
          answers = { candidate: answerStats(sides.candidate), baseline: answerStats(sides.baseline) };
          if (config.style) {
            const style = compilePattern(config.style.pattern);
            styleRates = { candidate: styleRate(sides.candidate, style), baseline: styleRate(sides.baseline, style) };
          }
          pairsKey = `runs/${input.runId}/eval/pairs.jsonl`;
          await putDerivedLines(deps, { key: pairsKey, datasetId, runId: input.runId, kind: 'eval.pairs' }, pairs);
        }
        const withStyle = (m: VersionMetrics, side: 'candidate' | 'baseline') =>
          styleRates ? { ...m, styleRate: styleRates[side] } : m;
        const summary: EvaluateSummary = {
          candidate: withStyle(metricsOf('candidate'), 'candidate'),
          baselineName,
          baseline: withStyle(metricsOf(baselineName), 'baseline'),
          pairsKey,
          prompts,
          answers,
        };
        await mergeVersionMetrics(deps.db, input.versionId, 'eval', summary);
        log.info({ candidate: summary.candidate, baseline: summary.baseline, baselineName }, 'evaluated');
        return summary;
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
  };
}
