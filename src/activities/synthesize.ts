import path from 'node:path';
import { redactedRow } from '../dataset/redact';
import { insertInteractions, setConsent, type InteractionToStore } from '../db/queries/interactions';
import { storedSampleIds, streamSamples, subjectConsents } from '../db/queries/synthetic';
import type { ChatMessage } from '../domain/conversation';
import { parsePipelineConfig, type SynthesizeConfig } from '../domain/model-config';
import {
  answerPrompt,
  cleanUserMessage,
  fillPrompt,
  sampleId,
  sampleIdPrefix,
  slotsOf,
  specHash,
  SYNTHETIC_SOURCE,
  SYNTHETIC_SUBJECT,
  userMessagePrompt,
} from '../domain/synthesis';
import type { IncumbentClient } from '../llm/incumbent';
import { compileSchema, matchesSchema } from '../llm/json-schema';
import type { ChatRequest } from '../llm/ollama';
import { type AnonymizedLine, type AnonymizeSummary } from './anonymize';
import { pool } from './concurrency';
import { activityLog, cancellationSignal, heartbeat, type ActivityDeps } from './deps';
import { FailureType, permanentFailure, retryableFailure } from './failures';
import { incumbentFor, requireCollectedDataset, requireModel } from './lookups';
import { linesOf, lineWriter, withWorkDir } from './staging';

export interface SynthesizeInput {
  runId: string;
  model: string;
  datasetId: string;
  anonymized: AnonymizeSummary;
}

export interface SpecReport {
  name: string;
  hash: string;
  /** Samples the spec asks for, samples there are now, made in this attempt, and dropped (invalid) in it. */
  wanted: number;
  stored: number;
  generated: number;
  invalid: number;
}

export interface SynthesizeSummary {
  /** The anonymized rows and the synthetic ones, in anonymize's form: score and export read these instead. */
  rows: AnonymizeSummary;
  teacher: string;
  specs: SpecReport[];
}

export const synthesizedKeyFor = (prefix: string) => `${prefix}work/synthesized.jsonl`;

/** Samples stored per transaction. */
const BATCH = 16;

type Teacher = (req: Omit<ChatRequest, 'model'>, signal: AbortSignal) => Promise<string>;

function teacherOf(deps: ActivityDeps, cfg: SynthesizeConfig, incumbent: IncumbentClient | null): Teacher {
  const t = cfg.teacher;
  return async (req, signal) => {
    if (t.provider === 'ollama') return (await deps.ollama.chat({ ...req, model: t.model }, signal)).content;
    return (await incumbent!.chat({ ...req, model: incumbent!.model }, signal)).content;
  };
}

/**
 * synthesize: a teacher (a model in Ollama, or the app's hosted incumbent, the natural teacher for an app moving off
 * it) writes conversations from the model's specs: first a user's message from the spec's prompt with its slots
 * filled, then the answer the app's assistant would give (the model's system prompt; its output schema as
 * structured output, an answer that still fails it dropped and counted). Each sample is an interaction of source
 * `synthetic` under tuneloop's own subject, with the teacher and the spec's hash in its metadata, and an id made
 * from (spec hash, sample number): a retried or resumed stage, or a later run, finds what was made and makes only
 * the rest, never more than the spec's count. Samples are stored as they come, so a teacher that fails loses at most
 * the calls in flight; its failure is retried with backoff (the activity's retry policy).
 *
 * Then the stage hands on the anonymized rows followed by every sample of the specs (redacted like any text that
 * leaves PostgreSQL); export puts synthetic rows in train only: evaluation stays on real data. Synthetic rows are
 * never collected as the app's rows (collect and anonymize leave them out).
 */
export function createSynthesizeActivities(deps: ActivityDeps) {
  return {
    async synthesize(input: SynthesizeInput): Promise<SynthesizeSummary> {
      const log = activityLog(deps, { model: input.model, datasetId: input.datasetId });
      const dataset = await requireCollectedDataset(deps.db, input.datasetId);
      const model = await requireModel(deps.db, input.model);
      const config = parsePipelineConfig(model.config);
      const cfg = config.synthesize;
      if (!cfg) throw permanentFailure(FailureType.CONFIG_INVALID, `model ${input.model} has no synthesize config`);
      const incumbent = incumbentFor(cfg.teacher.provider === 'incumbent', config.incumbent);
      const teacherName =
        cfg.teacher.provider === 'ollama' ? `ollama:${cfg.teacher.model}` : `incumbent:${config.incumbent!.model}`;
      const teach = teacherOf(deps, cfg, incumbent);
      const schema = (model.output_schema as Record<string, unknown> | null) ?? null;
      const validate = schema ? compileSchema(schema) : null;

      // tuneloop's own subject, consenting: its rows are made for training.
      const consents = await subjectConsents(deps.db, model.app_id, SYNTHETIC_SUBJECT);
      if (!consents) {
        await deps.db.transaction().execute((trx) =>
          setConsent(trx, {
            appId: model.app_id,
            subject: SYNTHETIC_SUBJECT,
            training: true,
            policyVersion: 'tuneloop-synthetic',
          }),
        );
      }

      const reports: SpecReport[] = [];
      try {
        for (const spec of cfg.specs) {
          const hash = specHash(spec, teacherName);
          const have = await storedSampleIds(deps.db, input.model, sampleIdPrefix(hash));
          const todo = Array.from({ length: spec.count }, (_, k) => k).filter((k) => !have.has(sampleId(hash, k)));
          const report: SpecReport = {
            name: spec.name,
            hash,
            wanted: spec.count,
            stored: have.size,
            generated: 0,
            invalid: 0,
          };
          reports.push(report);
          let pending: InteractionToStore[] = [];
          const store = async () => {
            const batch = pending;
            pending = [];
            if (!batch.length) return;
            await deps.db.transaction().execute((trx) => insertInteractions(trx, batch));
            report.stored += batch.length;
            heartbeat({ spec: spec.name, stored: report.stored, wanted: spec.count });
          };
          const options = (k: number) => ({ temperature: spec.temperature, seed: k, num_predict: cfg.maxTokens });
          const stop = new AbortController();
          const cancelled = cancellationSignal();
          const signal = cancelled ? AbortSignal.any([stop.signal, cancelled]) : stop.signal;
          try {
            await pool(todo, cfg.concurrency, stop, async (k) => {
              const slots = slotsOf(spec, k);
              const asked = await teach(
                { messages: userMessagePrompt(fillPrompt(spec.prompt, slots), k), options: options(k) },
                signal,
              );
              const user = cleanUserMessage(asked);
              const answer = user
                ? await teach(
                    {
                      messages: answerPrompt(model.system_prompt, user),
                      options: options(k),
                      ...(schema ? { format: schema } : {}),
                    },
                    signal,
                  )
                : '';
              if (!user || !answer.trim() || (validate && !matchesSchema(answer, validate))) {
                report.invalid++;
                return;
              }
              report.generated++;
              heartbeat({ spec: spec.name, stored: report.stored, generated: report.generated, wanted: spec.count });
              pending.push({
                appId: model.app_id,
                model: input.model,
                subject: SYNTHETIC_SUBJECT,
                id: sampleId(hash, k),
                source: SYNTHETIC_SOURCE,
                messages: [
                  { role: 'user', content: user },
                  { role: 'assistant', content: answer },
                ] as ChatMessage[],
                metadata: { synthetic: { teacher: teacherName, spec: spec.name, specHash: hash, slots, sample: k } },
              });
              if (pending.length >= BATCH) await store();
            });
          } catch (err) {
            await store(); // what was made is kept: the retry makes only the rest
            if (cancelled?.aborted) throw err;
            throw retryableFailure(
              FailureType.TEACHER_UNAVAILABLE,
              `the teacher ${teacherName} failed: ${(err as Error).message}`,
            );
          }
          await store();
          log.info({ ...report }, 'synthesized');
        }
      } finally {
        await incumbent?.close(); // its kept-alive connections
      }

      // ---- hand on: the anonymized rows, then every sample of the specs, redacted
      return withWorkDir(deps, `synthesize-${input.datasetId}`, async (work) => {
        const out = lineWriter(path.join(work, 'synthesized.jsonl'));
        let synthetic = 0;
        const entities = { ...input.anonymized.entities };
        try {
          for await (const line of linesOf(await deps.store.get(input.anonymized.key))) {
            if (line !== '') await out.write(line);
          }
          for (const r of reports) {
            // Never more than the spec's count, whatever an earlier, larger count made.
            const rows = streamSamples(deps.db, input.model, sampleIdPrefix(r.hash), r.wanted);
            for await (const row of rows) {
              const decision = redactedRow(
                { id: row.id, seq: row.seq, source: SYNTHETIC_SOURCE, messages: row.messages, feedback: [] },
                model.system_prompt,
                entities,
              );
              if (decision.kind !== 'sft') continue;
              const line: AnonymizedLine = {
                id: row.id,
                source: SYNTHETIC_SOURCE,
                corrected: false,
                messages: decision.row.messages,
              };
              await out.write(JSON.stringify(line));
              synthetic++;
            }
          }
        } finally {
          await out.close();
        }
        const key = synthesizedKeyFor(dataset.prefix);
        const info = await deps.store.put(key, out.read(), { contentType: 'application/jsonl' });
        return {
          rows: {
            ...input.anonymized,
            key,
            sha256: info.sha256,
            bytes: info.size,
            rows: input.anonymized.rows + synthetic,
            considered: input.anonymized.considered + synthetic,
            entities,
          },
          teacher: teacherName,
          specs: reports,
        };
      });
    },
  };
}
