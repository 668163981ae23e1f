import path from 'node:path';
import { franc } from 'franc-min';
import { serializeRow, sha256Hex } from '../dataset/rows';
import { cachedScores, saveQualityReport, saveScores } from '../db/queries/scores';
import type { ChatMessage } from '../domain/conversation';
import { parsePipelineConfig, type ScoreConfig } from '../domain/model-config';
import {
  calibrate,
  Extremes,
  histogram,
  judgeMayFilter,
  shapeProblem,
  tally,
  type Calibration,
  type DropReason,
  type SourceTally,
} from '../domain/score';
import { IncumbentError, type IncumbentClient } from '../llm/incumbent';
import { GREEDY, OllamaError } from '../llm/ollama';
import { DigestStream } from '../storage/blob-store';
import type { AnonymizedLine, AnonymizeSummary } from './anonymize';
import { pool } from './concurrency';
import { activityLog, cancellationSignal, heartbeat, type ActivityDeps } from './deps';
import { FailureType, permanentFailure, retryableFailure } from './failures';
import { incumbentFor, requireCollectedDataset, requireModel } from './lookups';
import { linesOf, lineWriter, withWorkDir } from './staging';

export interface ScoreInput {
  runId: string;
  model: string;
  datasetId: string;
  anonymized: AnonymizeSummary;
}

/** The dataset quality report: numbers and interaction ids only (the rows' text stays in the dataset). */
export interface QualityReport {
  judge: string | null;
  rubricSha256: string;
  threshold: number;
  /** Whether the judge's scores dropped rows, and why (calibration decides). */
  judgeFiltered: boolean;
  why: string;
  calibration: Calibration;
  counts: {
    considered: number;
    kept: number;
    lowScore: number;
    tooShort: number;
    tooLong: number;
    wrongLanguage: number;
    /** Rows scored by people (their rating or thumb), by the judge, judged now (not from the cache), and rows the
     * judge gave no valid score (kept). */
    byHuman: number;
    byJudge: number;
    judgedNow: number;
    judgeInvalid: number;
  };
  sources: SourceTally;
  histogram: { human: number[]; judge: number[] };
  examples: ReturnType<Extremes['result']>;
}

export interface ScoreSummary {
  /** The kept rows, in anonymize's form: export reads these instead. */
  rows: AnonymizeSummary;
  quality: QualityReport;
}

export const scoredKeyFor = (prefix: string) => `${prefix}work/scored.jsonl`;

/**
 * The judge answers in this shape (structured output): a 1–5 rating, which Ollama's grammar holds to (it does not
 * hold a number to a minimum and maximum: a small model answered 50), then its reason. The score is mapped to
 * [0, 1] as people's ratings are ((s − 1) / 4).
 */
const SCORE_SCHEMA = {
  type: 'object',
  properties: { score: { type: 'integer', enum: [1, 2, 3, 4, 5] }, reason: { type: 'string', maxLength: 300 } },
  required: ['score', 'reason'],
} as const;

/** The judge's score in [0, 1] and reason, from its JSON, or from its cut-short start; null when there is none. */
export function parseJudgement(content: string): { score: number; reason: string } | null {
  try {
    const v = JSON.parse(content) as { score?: unknown; reason?: unknown };
    if (typeof v.score === 'number' && Number.isInteger(v.score) && v.score >= 1 && v.score <= 5) {
      return { score: (v.score - 1) / 4, reason: typeof v.reason === 'string' ? v.reason.slice(0, 300) : '' };
    }
    return null;
  } catch {
    const m = /^\s*\{\s*"score"\s*:\s*([1-5])\s*[,}]/.exec(content);
    return m ? { score: (Number(m[1]) - 1) / 4, reason: '' } : null;
  }
}

function judgePrompt(messages: ChatMessage[], rubric: string): ChatMessage[] {
  const conversation = messages
    .filter((m) => m.role !== 'system')
    .map((m) => `${m.role.toUpperCase()}: ${m.content}`)
    .join('\n');
  return [
    {
      role: 'system',
      content:
        'You rate a conversation between a user and an assistant as an example to train the assistant on. ' +
        `A good example's last answer meets this rubric: ${rubric} ` +
        'Reply with JSON: {"score": <1 (useless) to 5 (exemplary)>, "reason": "<one short sentence>"}.',
    },
    { role: 'user', content: conversation },
  ];
}

export type Judge = (messages: ChatMessage[], signal: AbortSignal) => Promise<{ score: number; reason: string } | null>;

/** What the judge is asked about one row (the model left to the provider): the rubric, the row, the schema. */
export function judgeRequest(messages: ChatMessage[], cfg: ScoreConfig) {
  return {
    messages: judgePrompt(messages, cfg.rubric),
    format: SCORE_SCHEMA,
    options: { ...GREEDY, num_predict: cfg.maxTokens },
  };
}

/** The judge the config names, as one call: a valid score, or null for an answer that is not one. */
export function judgeOf(
  deps: Pick<ActivityDeps, 'ollama'>,
  cfg: ScoreConfig,
  incumbent: IncumbentClient | null,
): Judge | null {
  const judge = cfg.judge;
  if (!judge) return null;
  return async (messages, signal) => {
    const req = judgeRequest(messages, cfg);
    if (judge.provider === 'ollama') {
      const r = await deps.ollama.chat(
        { ...req, model: judge.model },
        AbortSignal.any([signal, AbortSignal.timeout(cfg.timeoutMs)]),
      );
      return parseJudgement(r.content);
    }
    const r = await incumbent!.chat({ ...req, model: '' }, signal);
    return parseJudgement(r.content);
  };
}

/** A judge's failure on one row that the row itself causes (the provider refuses it): the row stays unscored. */
function refusedRow(err: unknown): boolean {
  return (
    (err instanceof IncumbentError && err.kind === 'refused' && err.status !== 404) ||
    (err instanceof OllamaError && err.status === 400)
  );
}

/** A judge that no retry can bring back: a wrong key, a model that is not there. */
function judgeMisconfigured(err: unknown): boolean {
  return (
    (err instanceof IncumbentError && (err.kind === 'misconfigured' || err.status === 404)) ||
    (err instanceof OllamaError && err.notFound)
  );
}

const BATCH = 64;

/**
 * score: rates every row the dataset may train on, and leaves out the ones not worth it. A row people rated takes
 * their score (rows.ts humanScore); every row is also judged (cached by judge, rubric and the row's redacted bytes,
 * so a row is judged once, not every night), which is how the judge's agreement with people is measured, on the
 * rated rows and the rows people rated down (anonymize's negatives). Rows too short, too long or in another
 * language than the model's are left out first; then rows under the threshold, by people's score, or by the judge's
 * where calibration lets it filter (domain/score.ts): a judge that agrees with people too little filters nothing,
 * and the run says so. Writes the kept rows in anonymize's form for export, and the quality report with the dataset.
 *
 * Two passes over the rows, so that memory is 5 bytes a row (its score and how it was decided), not its text. A
 * retry resumes: every judged score is saved as its batch ends, and a retry finds it in the cache.
 */
export function createScoreActivities(deps: ActivityDeps) {
  return {
    async score(input: ScoreInput): Promise<ScoreSummary> {
      const log = activityLog(deps, { model: input.model, datasetId: input.datasetId });
      const dataset = await requireCollectedDataset(deps.db, input.datasetId);
      const model = await requireModel(deps.db, input.model);
      const config = parsePipelineConfig(model.config);
      const cfg = config.score;
      if (!cfg) throw permanentFailure(FailureType.CONFIG_INVALID, `model ${input.model} has no score config`);
      const incumbent = incumbentFor(cfg.judge?.provider === 'incumbent', config.incumbent);
      const judge = judgeOf(deps, cfg, incumbent);
      const judgeName = !cfg.judge
        ? null
        : cfg.judge.provider === 'ollama'
          ? `ollama:${cfg.judge.model}`
          : `incumbent:${config.incumbent!.model}`;
      const rubricSha256 = sha256Hex(cfg.rubric);
      const a = input.anonymized;

      const counts: QualityReport['counts'] = {
        considered: 0,
        kept: 0,
        lowScore: 0,
        tooShort: 0,
        tooLong: 0,
        wrongLanguage: 0,
        byHuman: 0,
        byJudge: 0,
        judgedNow: 0,
        judgeInvalid: 0,
      };

      /**
       * Judge scores of a batch of rows, from the cache or the judge; NaN where there is none (a row with a shape
       * problem is not judged: `skip`).
       */
      const judgeBatch = async (
        batch: { line: AnonymizedLine; sha: string }[],
        skip: (i: number) => boolean = () => false,
      ): Promise<Float64Array> => {
        const out = new Float64Array(batch.length).fill(NaN);
        if (!judge || !judgeName) return out;
        const wanted = batch.flatMap((b, i) => (skip(i) ? [] : [i]));
        const cached = await cachedScores(
          deps.db,
          judgeName,
          rubricSha256,
          wanted.map((i) => batch[i]!.sha),
        );
        const fresh: Parameters<typeof saveScores>[3][number][] = [];
        const todo = wanted.filter((i) => {
          const c = cached.get(batch[i]!.sha);
          if (c) out[i] = c.score;
          return !c;
        });
        const stop = new AbortController();
        const cancelled = cancellationSignal();
        const signal = cancelled ? AbortSignal.any([stop.signal, cancelled]) : stop.signal;
        try {
          await pool(todo, cfg.concurrency, stop, async (i) => {
            const b = batch[i]!;
            let r: { score: number; reason: string } | null;
            try {
              r = await judge(b.line.messages, signal);
            } catch (err) {
              if (!refusedRow(err)) throw err;
              r = null;
            }
            counts.judgedNow++;
            heartbeat({ pass: 1, judgedNow: counts.judgedNow });
            if (!r) {
              counts.judgeInvalid++;
              return;
            }
            out[i] = r.score;
            fresh.push({ rowSha256: b.sha, interactionId: b.line.id, score: r.score, reason: r.reason });
          });
        } catch (err) {
          // Whatever was judged before the judge failed is kept: the retry does not ask again.
          await saveScores(deps.db, judgeName, rubricSha256, fresh);
          if (cancelled?.aborted) throw err;
          const what = `the judge ${judgeName} failed: ${(err as Error).message}`;
          if (judgeMisconfigured(err)) throw permanentFailure(FailureType.CONFIG_INVALID, what);
          throw retryableFailure(FailureType.JUDGE_UNAVAILABLE, what);
        }
        await saveScores(deps.db, judgeName, rubricSha256, fresh);
        return out;
      };

      /** Streams a redacted rows object, batch by batch. */
      async function* batchesOf(key: string, digest?: DigestStream) {
        let batch: { line: AnonymizedLine; sha: string }[] = [];
        const source = await deps.store.get(key);
        for await (const text of linesOf(digest ? source.pipe(digest) : source)) {
          if (text === '') continue;
          const line = JSON.parse(text) as AnonymizedLine;
          batch.push({ line, sha: sha256Hex(serializeRow({ messages: line.messages })) });
          if (batch.length === BATCH) {
            yield batch;
            batch = [];
          }
        }
        if (batch.length) yield batch;
      }

      const scoreRows = (): Promise<ScoreSummary> =>
        withWorkDir(deps, `score-${input.datasetId}`, async (work) => {
          // ---- pass 1: each row's shape, people's score and the judge's
          const problems: (DropReason | null)[] = [];
          const human: number[] = [];
          const judged: number[] = [];
          const pairs: { human: number; judge: number }[] = [];
          const languageOf = (messages: ChatMessage[]) => {
            if (!cfg.language) return null;
            const detected = franc(
              messages
                .filter((m) => m.role !== 'system')
                .map((m) => m.content)
                .join('\n'),
              { minLength: 20 },
            );
            return { expected: cfg.language, detected: detected === 'und' ? null : detected };
          };
          let seen = 0;
          const digest = new DigestStream();
          for await (const batch of batchesOf(a.key, digest)) {
            const shapes = batch.map((b) =>
              shapeProblem(
                b.line.messages.reduce((n, m) => n + m.content.length, 0),
                cfg,
                languageOf(b.line.messages),
              ),
            );
            // A row that is left out anyway is not sent to the judge (a row too long for its context would fail).
            const scores = await judgeBatch(batch, (i) => shapes[i] !== null);
            batch.forEach((b, i) => {
              problems.push(shapes[i]!);
              human.push(b.line.human ?? NaN);
              judged.push(scores[i]!);
              if (b.line.human !== undefined && !Number.isNaN(scores[i]!))
                pairs.push({ human: b.line.human, judge: scores[i]! });
            });
            seen += batch.length;
            heartbeat({ pass: 1, rows: seen, judgedNow: counts.judgedNow });
          }
          if (digest.result().sha256 !== a.sha256) {
            throw permanentFailure(
              FailureType.DATASET_INVALID,
              `${a.key} does not match the sha256 its stage recorded (${digest.result().sha256} ≠ ${a.sha256})`,
            );
          }
          // People's thumbs-down rows: judged too, only to see whether the judge agrees.
          if (judge && a.negatives) {
            for await (const batch of batchesOf(a.negatives.key)) {
              const scores = await judgeBatch(batch);
              batch.forEach((b, i) => {
                if (!Number.isNaN(scores[i]!)) pairs.push({ human: b.line.human ?? 0, judge: scores[i]! });
              });
              heartbeat({ pass: 1, negatives: true, judgedNow: counts.judgedNow });
            }
          }
          const calibration = calibrate(pairs, cfg.threshold);
          const verdict = judge
            ? judgeMayFilter(calibration, cfg.calibration)
            : { filter: false, reason: 'no judge configured: only people’s scores filter' };

          // ---- pass 2: the decisions, and the kept rows written for export
          const out = lineWriter(path.join(work, 'scored.jsonl'));
          const sources: SourceTally = {};
          const extremes = new Extremes(5);
          let corrected = 0;
          let i = 0;
          try {
            for await (const batch of batchesOf(a.key)) {
              for (const b of batch) {
                if (i >= human.length) {
                  throw permanentFailure(FailureType.DATASET_INVALID, `${a.key} changed between two reads`);
                }
                const h = human[i]!;
                const j = judged[i]!;
                let drop = problems[i]!;
                i++;
                counts.considered++;
                const score = !Number.isNaN(h) ? h : j;
                const by = !Number.isNaN(h) ? 'human' : 'judge';
                if (!Number.isNaN(h)) counts.byHuman++;
                else if (!Number.isNaN(j)) counts.byJudge++;
                if (!Number.isNaN(score)) extremes.add({ id: b.line.id, score, by });
                if (!drop && !Number.isNaN(score) && score < cfg.threshold && (by === 'human' || verdict.filter)) {
                  drop = 'lowScore';
                }
                tally(sources, b.line.source, drop);
                if (drop) {
                  counts[drop]++;
                  continue;
                }
                counts.kept++;
                if (b.line.corrected) corrected++;
                await out.write(JSON.stringify(b.line));
              }
              heartbeat({ pass: 2, rows: i });
            }
          } finally {
            await out.close();
          }
          if (i !== human.length) {
            throw permanentFailure(
              FailureType.DATASET_INVALID,
              `${a.key} changed between two reads (${human.length} → ${i} rows)`,
            );
          }
          const key = scoredKeyFor(dataset.prefix);
          const info = await deps.store.put(key, out.read(), { contentType: 'application/jsonl' });
          const quality: QualityReport = {
            judge: judgeName,
            rubricSha256,
            threshold: cfg.threshold,
            judgeFiltered: verdict.filter,
            why: verdict.reason,
            calibration,
            counts,
            sources,
            histogram: {
              human: histogram(human.filter((h) => !Number.isNaN(h))),
              judge: histogram(judged.filter((j) => !Number.isNaN(j))),
            },
            examples: extremes.result(),
          };
          await saveQualityReport(deps.db, dataset.id, quality);
          log.info({ counts, judgeFiltered: verdict.filter, why: verdict.reason }, 'scored');
          return {
            rows: {
              ...a,
              key,
              sha256: info.sha256,
              bytes: info.size,
              rows: out.lines,
              // What export reports as corrected is what it trains on: the kept rows.
              corrected,
            },
            quality,
          };
        });
      try {
        return await scoreRows();
      } finally {
        await incumbent?.close(); // its kept-alive connections
      }
    },
  };
}
