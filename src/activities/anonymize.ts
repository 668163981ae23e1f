import path from 'node:path';
import { redactedRow } from '../dataset/redact';
import { streamConsentedRange } from '../db/queries/interactions';
import type { ChatMessage } from '../domain/conversation';
import { PII_ENGINE_VERSION } from '../pii';
import { activityLog, heartbeat, type ActivityDeps } from './deps';
import { requireCollectedDataset, requireModel } from './lookups';
import { lineWriter, withWorkDir } from './staging';

export interface AnonymizeInput {
  runId: string;
  model: string;
  datasetId: string;
}

export interface AnonymizeSummary {
  /** The redacted rows, one JSON object a line ({@link AnonymizedLine}), in the dataset's work folder. */
  key: string;
  sha256: string;
  bytes: number;
  rows: number;
  considered: number;
  negativeFeedback: number;
  invalid: number;
  corrected: number;
  /** Redacted values by type, over every text field of the range. */
  entities: Record<string, number>;
  engineVersion: string;
  /** The negatively rated rows ({@link negativesKeyFor}; absent in runs from before it was written). */
  negatives?: { key: string; sha256: string; rows: number };
}

/** One redacted row as the anonymize stage hands it on: the training row and where it came from. */
export interface AnonymizedLine {
  id: string;
  source: string;
  corrected: boolean;
  messages: ChatMessage[];
  /** What people said of it in [0, 1] (rows.ts humanScore; a correction is 1); absent when they said nothing. */
  human?: number;
}

export const anonymizedKeyFor = (prefix: string) => `${prefix}work/anonymized.jsonl`;

/** The rows people rated down (kept out of training), redacted the same way: the score stage calibrates on them. */
export const negativesKeyFor = (prefix: string) => `${prefix}work/negatives.jsonl`;

const FETCH = 500;

/**
 * anonymize: the only stage that reads interaction text out of PostgreSQL. It streams the collected range
 * (consented subjects only, feedback joined) through one server-side cursor, applies feedback (a correction
 * replaces the answer; negative feedback without one keeps the row out), redacts every text the app sent
 * ({@link redactedRow}) and writes the redacted rows to the dataset's work folder. A retry rewrites the same key.
 */
export function createAnonymizeActivities(deps: ActivityDeps) {
  return {
    async anonymize(input: AnonymizeInput): Promise<AnonymizeSummary> {
      const log = activityLog(deps, { model: input.model, datasetId: input.datasetId });
      const dataset = await requireCollectedDataset(deps.db, input.datasetId);
      const model = await requireModel(deps.db, input.model);

      return withWorkDir(deps, `anonymize-${input.datasetId}`, async (dir) => {
        const out = lineWriter(path.join(dir, 'anonymized.jsonl'));
        const negatives = lineWriter(path.join(dir, 'negatives.jsonl'));
        const counts = { considered: 0, negativeFeedback: 0, invalid: 0, corrected: 0 };
        const entities: Record<string, number> = {};
        try {
          const rows = streamConsentedRange(deps.db, input.model, dataset.from_seq, dataset.to_seq, FETCH);
          for await (const r of rows) {
            counts.considered++;
            const decision = redactedRow(r, model.system_prompt, entities);
            if (decision.kind === 'negative') {
              counts.negativeFeedback++;
              const line: AnonymizedLine = {
                id: r.id,
                source: r.source,
                corrected: false,
                messages: decision.row.messages,
                human: decision.human,
              };
              await negatives.write(JSON.stringify(line));
            }
            if (decision.kind === 'invalid') counts.invalid++;
            if (decision.kind !== 'sft') continue;
            if (decision.corrected) counts.corrected++;
            const line: AnonymizedLine = {
              id: r.id,
              source: r.source,
              corrected: decision.corrected,
              messages: decision.row.messages,
              ...(decision.human !== null ? { human: decision.human } : {}),
            };
            await out.write(JSON.stringify(line));
            if (counts.considered % FETCH === 0) heartbeat({ rows: counts.considered });
          }
        } finally {
          await Promise.all([out.close(), negatives.close()]);
        }
        const key = anonymizedKeyFor(dataset.prefix);
        const info = await deps.store.put(key, out.read(), { contentType: 'application/jsonl' });
        const negativesKey = negativesKeyFor(dataset.prefix);
        const negInfo = await deps.store.put(negativesKey, negatives.read(), { contentType: 'application/jsonl' });
        const summary: AnonymizeSummary = {
          key,
          sha256: info.sha256,
          bytes: info.size,
          rows: out.lines,
          ...counts,
          entities,
          engineVersion: PII_ENGINE_VERSION,
          negatives: { key: negativesKey, sha256: negInfo.sha256, rows: negatives.lines },
        };
        log.info({ rows: summary.rows, entities }, 'anonymized');
        return summary;
      });
    },
  };
}
