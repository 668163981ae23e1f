import { createHash } from 'node:crypto';
import { withSystemPrompt, type ChatMessage } from '../domain/conversation';

// Pure dataset building: interaction + feedback → a training row in the chat-messages form the trainer reads.

export interface FeedbackFacts {
  thumbs: 'up' | 'down' | null;
  rating: number | null;
  correction: string | null;
  createdAt: string;
}

export interface SourceInteraction {
  id: string;
  seq: number;
  source: string;
  messages: ChatMessage[];
  feedback: FeedbackFacts[];
}

export interface TrainingRow {
  messages: ChatMessage[];
}

export type RowDecision =
  /** `human`: what people said of the row, in [0, 1] (a correction is theirs: 1); null when they said nothing. */
  | { kind: 'sft'; row: TrainingRow; corrected: boolean; human: number | null }
  /**
   * Negative feedback and no correction: kept out of SFT, still counted (a later stage trains on preferences), and
   * the row as it was, for the score stage's judge calibration.
   */
  | { kind: 'negative'; row: TrainingRow; human: number }
  | { kind: 'invalid'; reason: string };

/**
 * People's newest word on a row as a score in [0, 1]: a 1–5 rating as (r − 1) / 4, else a thumb (up 1, down 0);
 * null when no feedback rates it.
 */
export function humanScore(feedback: readonly FeedbackFacts[]): number | null {
  const rated = [...feedback]
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
    .filter((f) => f.rating !== null || f.thumbs !== null)
    .at(-1);
  if (!rated) return null;
  if (rated.rating !== null) return (rated.rating - 1) / 4;
  return rated.thumbs === 'up' ? 1 : 0;
}

/**
 * Decides what one interaction contributes. The newest correction replaces the final assistant turn; a
 * thumbs-down or a rating of 2 or less without a correction keeps the row out of supervised fine-tuning.
 * The model's system prompt leads the row unless the interaction carries its own.
 */
export function buildRow(interaction: SourceInteraction, systemPrompt: string | null): RowDecision {
  const turns = interaction.messages;
  const last = turns.at(-1);
  if (!last || last.role !== 'assistant') return { kind: 'invalid', reason: 'does not end with an assistant turn' };
  if (!turns.some((m) => m.role === 'user')) return { kind: 'invalid', reason: 'has no user turn' };

  const byTime = [...interaction.feedback].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  const correction = byTime.filter((f) => f.correction !== null && f.correction.trim() !== '').at(-1)?.correction;
  const negative = byTime.some((f) => f.thumbs === 'down' || (f.rating !== null && f.rating <= 2));
  const rowWith = (answer: string) =>
    withSystemPrompt(
      [
        ...turns.slice(0, -1).map((m): ChatMessage => ({ role: m.role, content: m.content })),
        { role: 'assistant', content: answer },
      ],
      systemPrompt,
    );
  if (negative && correction === undefined) {
    // Left out because of its most negative signal, so that is what it says for calibration (a later 5 does not
    // make a row left out for a thumbs-down a "keep").
    const lowest = Math.min(
      ...byTime.map((f) => (f.rating !== null ? (f.rating - 1) / 4 : f.thumbs === 'down' ? 0 : 1)),
    );
    return { kind: 'negative', row: { messages: rowWith(last.content) }, human: lowest };
  }
  return {
    kind: 'sft',
    row: { messages: rowWith(correction ?? last.content) },
    corrected: correction !== undefined,
    human: correction !== undefined ? 1 : humanScore(byTime),
  };
}

/** The serialized row, one JSONL line without the newline. Key order is fixed so equal rows are equal bytes. */
export function serializeRow(row: TrainingRow): string {
  return JSON.stringify({ messages: row.messages.map((m) => ({ role: m.role, content: m.content })) });
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Stable split by a hash of the interaction id: the same interaction lands in the same split on every run,
 * so an evaluation row never becomes a training row later.
 */
export function splitOf(interactionId: string, validationShare: number): 'train' | 'validation' {
  if (validationShare <= 0) return 'train';
  const bucket = createHash('sha256').update(interactionId).digest().readUInt32BE(0) / 0x1_0000_0000;
  return bucket < validationShare ? 'validation' : 'train';
}

/** Hash of everything in the model config that changes the exported bytes. */
export function exportConfigHash(cfg: {
  systemPrompt: string | null;
  validationShare: number;
  format: string;
  /** The PII engine's version: a new engine redacts differently, so the bytes change. */
  piiEngine: string;
  /** Which duplicates are left out. */
  dedup: { near: boolean; threshold: number };
}): string {
  return sha256Hex(JSON.stringify({ v: 1, ...cfg }));
}
