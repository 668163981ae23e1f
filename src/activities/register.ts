import { createReadStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { SplitSummary } from '../dataset/manifest';
import { LockTimeout, withAdvisoryLock } from '../db/locks';
import type { Db } from '../db/pool';
import { getVersion, markRegistered, mergeVersionMetrics, setVersionStatus } from '../db/queries/registry';
import { promptOf, type ChatMessage } from '../domain/conversation';
import { parsePipelineConfig } from '../domain/model-config';
import { versionTag } from '../domain/versions';
import { importModel, readImportPlan } from '../llm/import';
import { GREEDY } from '../llm/ollama';
import { sha256Hex } from '../dataset/rows';
import { downloadDir, ensureLocalCopy } from './artifacts';
import { activityLog } from './deps';
import { putDerivedLines } from './derived';
import { FailureType, permanentFailure, retryableFailure } from './failures';
import { requireModel } from './lookups';
import { linesOf } from './staging';
import { resolveBaseModel, type GpuActivityDeps } from './train';
import { runTrainerCommand } from './trainer-command';

export interface RegisterInput {
  runId: string;
  model: string;
  versionId: string;
  /** Where the parity prompts come from: validation rows first, train rows if there are too few. */
  validation: SplitSummary;
  train: SplitSummary;
}

export interface ParityCase {
  id: string;
  ok: boolean;
  how: 'exact' | 'near_tie' | 'prompt' | 'answer';
  reason?: string;
  trainer: string;
  ollama: string;
}

export interface RegisterSummary {
  tag: string;
  method: 'base' | 'adapter' | 'merged';
  family: string | null;
  bytes: number;
  parity: { cases: number; exact: number; nearTie: number; failed: number };
}

/**
 * Every call that changes Ollama's tags (create, copy, delete) holds this lock, across all hosts and Ollamas (one
 * key: two workers may spell the same Ollama's address differently). Ollama writes a tag's manifest by truncating
 * and rewriting it, and deleting a tag while another is half written can remove blobs still in use. Blob uploads
 * do not need it and happen outside. A waiter heartbeats (inside an activity) and gives up after `waitMs` with a
 * retryable failure rather than blocking: the retry comes back later.
 */
export async function withOllamaWrites<T>(db: Db, fn: () => Promise<T>, waitMs = 60_000): Promise<T> {
  let ctx: Context | null = null;
  try {
    ctx = Context.current();
  } catch {
    // not in an activity (tests, tools)
  }
  try {
    const r = await withAdvisoryLock(
      db,
      'tuneloop:ollama-tag-writes',
      { waitMs, onWait: () => ctx?.heartbeat({ waiting: 'ollama-tag-writes' }), signal: ctx?.cancellationSignal },
      fn,
    );
    if (!r.ran) throw new Error('unreachable: a waiting lock runs or throws');
    return r.value;
  } catch (err) {
    if (err instanceof LockTimeout) throw retryableFailure(FailureType.OLLAMA_UNAVAILABLE, `${err.message}: busy`);
    throw err;
  }
}

export function createRegisterActivities(deps: GpuActivityDeps) {
  return {
    /**
     * register: puts the candidate into Ollama as `<model>:<version>` (the adapter onto the base where Ollama can
     * import it, merged weights otherwise), then checks parity: Ollama's greedy answers to validation prompts must
     * be the trainer's own for the same prompts (same chat template, same stop tokens), up to float16 near-ties.
     * A mismatch deletes the tag, marks the version `failed` and fails the stage naming the object that holds each
     * failing prompt with both answers (a derived object of the dataset: no text in the error). Idempotent:
     * a retry imports the same files under the same tag.
     */
    async register(input: RegisterInput): Promise<RegisterSummary> {
      const ctx = Context.current();
      const log = activityLog(deps, { model: input.model, runId: input.runId });
      const model = await requireModel(deps.db, input.model);
      const { serving, training } = parsePipelineConfig(model.config);
      const version = await getVersion(deps.db, input.versionId);
      if (!version?.adapter_key) {
        throw permanentFailure(FailureType.DATASET_INVALID, `model version ${input.versionId} has no adapter`);
      }
      const tag = versionTag(input.model, version.version);
      const base = await resolveBaseModel(model.base_model, deps.trainer.modelsDir);
      const work = path.join(deps.trainer.workDir, 'register', input.runId);
      await rm(work, { recursive: true, force: true });
      await mkdir(work, { recursive: true });
      const beat = setInterval(() => ctx.heartbeat({ tag }), 5_000);
      try {
        const adapterDir = path.join(work, 'adapter');
        await downloadDir(deps.store, version.adapter_key, adapterDir);

        // 1. The import plan, from the trainer (which knows the tokenizer, the template and Ollama's quirks).
        const stageArgs = ['--base', base, '--adapter', adapterDir, '--out', path.join(work, 'stage')];
        stageArgs.push('--merge', serving.merge);
        if (serving.template) {
          await writeFile(path.join(work, 'template.gotmpl'), serving.template);
          stageArgs.push('--template', path.join(work, 'template.gotmpl'));
          for (const s of serving.stop ?? []) stageArgs.push('--stop', s);
        }
        await runTrainerCommand({ trainer: deps.trainer, command: 'ollama-stage', args: stageArgs, cwd: work, log });
        const plan = await readImportPlan(path.join(work, 'stage', 'ollama_import.json'));

        // 2. Into Ollama.
        const imported = await importModel(deps.ollama, plan, tag, {
          signal: ctx.cancellationSignal,
          parameters: { num_ctx: Math.max(4096, training.maxLength) },
          lockCreate: (create) => withOllamaWrites(deps.db, create),
        });
        log.info({ tag, method: plan.method, family: plan.family, bytes: imported.bytes }, 'imported into Ollama');

        // 3. Parity: the same prompts through Ollama and through the trainer.
        const prompts = await parityPrompts(deps, input, work, serving.parityPrompts);
        const promptOf = new Map(prompts.map((p, i) => [`p${i + 1}`, p]));
        const cases = [];
        for (const [id, { messages }] of promptOf) {
          const r = await deps.ollama.chat(
            { model: tag, messages, options: { ...GREEDY, num_predict: serving.parityMaxTokens } },
            ctx.cancellationSignal,
          );
          cases.push({
            id,
            messages,
            ollama: { content: r.content, done: r.done, done_reason: r.doneReason, prompt_tokens: r.promptTokens },
          });
        }
        await writeFile(
          path.join(work, 'parity.json'),
          JSON.stringify({
            base_model: base,
            adapter: adapterDir,
            cases,
            max_new_tokens: serving.parityMaxTokens,
            logit_tolerance: serving.logitTolerance,
            stop: plan.parameters.stop,
          }),
        );
        const done = await runTrainerCommand({
          trainer: deps.trainer,
          command: 'parity',
          args: ['--config', path.join(work, 'parity.json')],
          cwd: work,
          log,
        });
        const results = (done.cases ?? []) as ParityCase[];
        const metrics = done.metrics as { cases: number; exact: number; near_tie: number; failed: number };
        const parity = {
          cases: metrics.cases,
          exact: metrics.exact,
          nearTie: metrics.near_tie,
          failed: metrics.failed,
        };
        const summary: RegisterSummary = {
          tag,
          method: plan.method,
          family: plan.family,
          bytes: imported.bytes,
          parity,
        };
        await mergeVersionMetrics(deps.db, input.versionId, 'register', {
          ...summary,
          cases: results.map(({ id, ok, how, reason }) => ({ id, ok, how, reason })),
        });
        if (parity.failed > 0) {
          // The prompts and both answers are the dataset's text: they go to a derived object (erasure reaches it),
          // never into the error, which the run's record and the workflow's history keep.
          const failedCases = results.filter((c) => !c.ok);
          const failuresKey = `runs/${input.runId}/register/parity-failures.jsonl`;
          if (!version.dataset_id) {
            throw permanentFailure(FailureType.INVALID_STATE, `model version ${input.versionId} names no dataset`);
          }
          await putDerivedLines(
            deps,
            { key: failuresKey, datasetId: version.dataset_id, runId: input.runId, kind: 'register.parity' },
            failedCases.map((c) => ({ ...c, ...promptOf.get(c.id)! })),
          );
          const message =
            `parity check failed for ${tag}: ${parity.failed} of ${parity.cases} validation prompts answered ` +
            `differently by Ollama and by the trainer (is the chat template or the stop token wrong?); ` +
            `each prompt with both answers: ${failuresKey}\n` +
            failedCases.map((c) => `  ${c.id}: ${c.reason ?? c.how}`).join('\n');
          await withOllamaWrites(deps.db, () => deps.ollama.delete(tag));
          await setVersionStatus(deps.db, input.versionId, 'failed', message.split('\n')[0]!);
          throw permanentFailure(FailureType.PARITY_MISMATCH, message, {
            failuresKey,
            cases: failedCases.map(({ id, how, reason }) => ({ id, how, reason })),
          });
        }
        await markRegistered(deps.db, input.versionId, tag);
        log.info({ tag, parity }, 'registered');
        return summary;
      } finally {
        clearInterval(beat);
        await rm(work, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Conversations to ask both sides: the first rows of the validation split (then train), cut before the answer, with
 * the dataset row each came from.
 */
async function parityPrompts(
  deps: GpuActivityDeps,
  input: RegisterInput,
  work: string,
  want: number,
): Promise<{ row: string; messages: ChatMessage[] }[]> {
  const prompts: { row: string; messages: ChatMessage[] }[] = [];
  for (const [name, split] of [
    ['validation', input.validation],
    ['train', input.train],
  ] as const) {
    if (prompts.length >= want || split.count === 0) continue;
    const file = path.join(work, `${name}.jsonl`);
    await ensureLocalCopy(deps.store, split.key, file, split.sha256);
    for await (const line of linesOf(createReadStream(file))) {
      if (prompts.length >= want) break;
      const messages = promptOf((JSON.parse(line) as { messages: ChatMessage[] }).messages);
      if (messages) prompts.push({ row: sha256Hex(line), messages });
    }
  }
  if (prompts.length === 0) throw permanentFailure(FailureType.DATASET_INVALID, 'no rows to check parity on');
  return prompts;
}
