import { z } from 'zod';
import { redactedRow } from '../dataset/redact';
import type { Db } from '../db/pool';
import { consentedInteractions } from '../db/queries/interactions';
import type { ChatMessage } from '../domain/conversation';

/**
 * The score stage's quality report names its best and worst rows by interaction id only: no copy of their text is
 * kept anywhere an erasure would have to find it. A run's view renders them here, from PostgreSQL, redacted exactly
 * as anonymize redacts them — so an erased row, or one whose subject withdrew consent, is simply not shown.
 */

const example = z.object({ id: z.string().uuid(), score: z.number(), by: z.enum(['human', 'judge']) });
const examples = z.object({ best: z.array(example), worst: z.array(example) });
type Example = z.infer<typeof example>;

export type RenderedExample = Example &
  ({ messages: ChatMessage[] } | { messages: null; unavailable: 'erased, or its subject withdrew consent' });

interface StageLike {
  name: string;
  summary: Record<string, unknown> | null;
}

/** `stages` with the score stage's example ids replaced by the examples' redacted conversations. */
export async function renderQualityExamples<S extends StageLike>(db: Db, stages: S[]): Promise<S[]> {
  const score = stages.find((s) => s.name === 'score');
  const parsed = examples.safeParse(score?.summary?.examples);
  if (!score || !parsed.success) return stages;
  const ids = [...new Set([...parsed.data.best, ...parsed.data.worst].map((e) => e.id))];
  const found = new Map((await consentedInteractions(db, ids)).map((r) => [r.id, r]));
  const render = (e: Example): RenderedExample => {
    const r = found.get(e.id);
    const decision = r ? redactedRow(r, null) : null;
    if (!decision || decision.kind === 'invalid') {
      return { ...e, messages: null, unavailable: 'erased, or its subject withdrew consent' };
    }
    return { ...e, messages: decision.row.messages };
  };
  const rendered = { best: parsed.data.best.map(render), worst: parsed.data.worst.map(render) };
  return stages.map((s) => (s === score ? { ...s, summary: { ...s.summary, examples: rendered } } : s));
}
