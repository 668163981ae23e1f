import { Context } from '@temporalio/activity';
import type { ChatMessage } from '../domain/conversation';
import { getVersion, mergeVersionMetrics } from '../db/queries/registry';
import { pairOutcome, winRate, type PairOutcome, type Verdict, type WinRate } from '../domain/evaluation';
import { parsePipelineConfig } from '../domain/model-config';
import { GREEDY, type OllamaClient } from '../llm/ollama';
import { activityLog, type ActivityDeps } from './deps';
import { putDerivedLines, type DerivedLine } from './derived';
import { FailureType, permanentFailure } from './failures';
import { requireModel } from './lookups';
import { linesOf } from './staging';

export interface JudgeInput {
  runId: string;
  model: string;
  versionId: string;
  pairsKey: string;
  baselineName: 'production' | 'base';
}

export interface JudgeSummary extends WinRate {
  judge: string;
  /** Pairs whose two verdicts disagreed (position bias): counted as ties. */
  disagreements: number;
  /** Verdicts that were not valid JSON of the schema (counted as ties). */
  invalid: number;
  judgementsKey: string;
}

/** The judge answers in this shape (Ollama's structured output enforces it). */
const VERDICT_SCHEMA = {
  type: 'object',
  properties: { winner: { type: 'string', enum: ['A', 'B', 'tie'] }, reason: { type: 'string' } },
  required: ['winner'],
} as const;

/** The verdict alone, where no reason is kept (the shadow stage): a few tokens a call instead of a sentence. */
const WINNER_SCHEMA = {
  type: 'object',
  properties: { winner: { type: 'string', enum: ['A', 'B', 'tie'] } },
  required: ['winner'],
} as const;

function judgePrompt(
  messages: ChatMessage[],
  a: string,
  b: string,
  criteria: string | undefined,
  withReason: boolean,
): ChatMessage[] {
  const conversation = messages.map((m) => `${m.role.toUpperCase()}: ${m.content}`).join('\n');
  return [
    {
      role: 'system',
      content:
        'You compare two answers an assistant could give as its next turn in a conversation. Judge which answer is ' +
        'more helpful, correct, safe and appropriate for this conversation; length is not a virtue. ' +
        (criteria ? `For this app, better also means: ${criteria} ` : '') +
        (withReason
          ? 'Reply with JSON: {"winner": "A" | "B" | "tie", "reason": "<one sentence>"}.'
          : 'Reply with JSON: {"winner": "A" | "B" | "tie"}.'),
    },
    {
      role: 'user',
      content: `Conversation:\n${conversation}\n\nAnswer A:\n${a}\n\nAnswer B:\n${b}\n\nWhich answer is better?`,
    },
  ];
}

function parseVerdict(content: string): Verdict | null {
  try {
    const v = (JSON.parse(content) as { winner?: unknown }).winner;
    return v === 'A' || v === 'B' || v === 'tie' ? v : null;
  } catch {
    return null;
  }
}

/**
 * One pair judged twice, the candidate first as A and then as B; a verdict that flips with the order is a tie.
 * `invalid` counts the verdicts that were not JSON of the schema (taken as ties). Without `withReason` the judge
 * names the winner only (the shadow keeps no reasons): a reason is most of a verdict's tokens.
 */
export async function judgePair(
  ollama: OllamaClient,
  judge: { model: string; criteria?: string },
  messages: ChatMessage[],
  candidate: string,
  baseline: string,
  signal: AbortSignal,
  withReason = true,
): Promise<{
  first: { verdict: Verdict; raw: string };
  second: { verdict: Verdict; raw: string };
  outcome: PairOutcome;
  invalid: number;
}> {
  let invalid = 0;
  const ask = async (a: string, b: string) => {
    const r = await ollama.chat(
      {
        model: judge.model,
        messages: judgePrompt(messages, a, b, judge.criteria, withReason),
        format: (withReason ? VERDICT_SCHEMA : WINNER_SCHEMA) as unknown as Record<string, unknown>,
        options: { ...GREEDY, num_predict: withReason ? 200 : 16 },
      },
      signal,
    );
    const v = parseVerdict(r.content);
    if (v === null) invalid++;
    return { verdict: v ?? ('tie' as const), raw: r.content };
  };
  const first = await ask(candidate, baseline); // candidate is A
  const second = await ask(baseline, candidate); // candidate is B
  return { first, second, outcome: pairOutcome(first.verdict, second.verdict), invalid };
}

export function createJudgeActivities(deps: ActivityDeps) {
  return {
    /**
     * judge: an LLM judge in Ollama (the model config's `judge.model`) compares the candidate's and the
     * baseline's answers to the same validation prompts, each pair twice with the order swapped; a verdict that
     * flips with the order is a tie. Returns the win rate with its 95 % interval; every verdict goes to the store.
     */
    async judge(input: JudgeInput): Promise<JudgeSummary> {
      const ctx = Context.current();
      const log = activityLog(deps, { model: input.model, runId: input.runId });
      const model = await requireModel(deps.db, input.model);
      const judge = parsePipelineConfig(model.config).judge;
      if (!judge) throw permanentFailure(FailureType.CONFIG_INVALID, `model ${input.model} has no judge configured`);
      if (!(await deps.ollama.show(judge.model, ctx.cancellationSignal))) {
        throw permanentFailure(
          FailureType.CONFIG_INVALID,
          `judge model ${judge.model} is not in Ollama at ${deps.ollama.host}: add it there first (nothing is downloaded)`,
        );
      }
      const version = await getVersion(deps.db, input.versionId);
      if (!version?.dataset_id) {
        throw permanentFailure(FailureType.INVALID_STATE, `model version ${input.versionId} names no dataset`);
      }
      const outcomes: PairOutcome[] = [];
      const lines: DerivedLine[] = [];
      let disagreements = 0;
      let invalid = 0;
      for await (const line of linesOf(await deps.store.get(input.pairsKey))) {
        if (outcomes.length >= judge.maxPairs) break;
        const p = JSON.parse(line) as {
          id: string;
          row: string;
          messages: ChatMessage[];
          candidate: string;
          baseline: string;
        };
        const {
          first,
          second,
          outcome,
          invalid: bad,
        } = await judgePair(deps.ollama, judge, p.messages, p.candidate, p.baseline, ctx.cancellationSignal);
        invalid += bad;
        if (outcome === 'tie' && first.verdict !== 'tie' && second.verdict !== 'tie') disagreements++;
        outcomes.push(outcome);
        lines.push({ id: p.id, row: p.row, candidateFirst: first, candidateSecond: second, outcome });
        ctx.heartbeat({ judged: outcomes.length });
      }
      const judgementsKey = `runs/${input.runId}/eval/judgements.jsonl`;
      // The verdicts' reasons may quote the conversation: a derived object of the dataset, which erasure reaches.
      await putDerivedLines(
        deps,
        { key: judgementsKey, datasetId: version.dataset_id, runId: input.runId, kind: 'eval.judgements' },
        lines,
      );
      const summary: JudgeSummary = { ...winRate(outcomes), judge: judge.model, disagreements, invalid, judgementsKey };
      await mergeVersionMetrics(deps.db, input.versionId, 'judge', summary);
      log.info({ winRate: summary.winRate, ci95: summary.ci95, pairs: summary.pairs }, 'judged');
      return summary;
    },
  };
}
