import { z } from 'zod';
import type { ChatMessage } from '../domain/conversation';
import { slug } from '../domain/model-config';
import { metadataSchema } from './metadata';
import { externalId, text } from './text';

/** The most interactions one POST may carry. */
export const MAX_BATCH = 500;
/** The most turns one chat interaction may hold. */
export const MAX_TURNS = 200;

const messageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: text() }).strict();

/**
 * Where a conversation breaks the turn order, or null. The order is what training needs: an optional leading
 * system turn, then user and assistant alternating, ending with the assistant's answer.
 */
export function turnOrderProblem(
  messages: readonly Pick<ChatMessage, 'role'>[],
): { index: number; message: string } | null {
  const start = messages[0]?.role === 'system' ? 1 : 0;
  if (messages.length - start < 2)
    return {
      index: -1,
      message: 'needs a user turn and then an assistant turn (after an optional leading system turn)',
    };
  for (let i = start; i < messages.length; i++) {
    const expected = (i - start) % 2 === 0 ? 'user' : 'assistant';
    if (messages[i]!.role !== expected) {
      const why =
        messages[i]!.role === 'system' ? 'a system turn may only come first' : 'turns alternate user/assistant';
      return { index: i, message: `expected ${expected === 'user' ? 'a user' : 'an assistant'} turn here: ${why}` };
    }
  }
  if (messages.at(-1)!.role !== 'assistant')
    return { index: -1, message: 'must end with an assistant turn (the answer to learn from)' };
  return null;
}

const messagesSchema = z
  .array(messageSchema)
  .max(MAX_TURNS, `at most ${MAX_TURNS} turns`)
  .superRefine((messages, ctx) => {
    const problem = turnOrderProblem(messages);
    if (problem)
      ctx.addIssue({
        code: 'custom',
        path: problem.index >= 0 ? [problem.index, 'role'] : [],
        message: problem.message,
      });
  });

/**
 * One interaction in any of the three shapes apps already log: chat `messages`, `prompt`/`completion`, or
 * `instruction`/`input`/`output`. The API and `tuneloop import` both validate with this schema.
 */
export const interactionSchema = z
  .object({
    id: externalId.optional(),
    model: slug,
    subject: externalId,
    messages: messagesSchema.optional(),
    prompt: text().optional(),
    completion: text().optional(),
    instruction: text().optional(),
    // Alpaca-style logs write `"input": ""` when there is none: empty means absent. Whitespace only is refused
    // like anywhere else.
    input: text(undefined, { allowEmpty: true }).optional(),
    output: text().optional(),
    metadata: metadataSchema.optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    const shapes = [
      v.messages !== undefined,
      v.prompt !== undefined || v.completion !== undefined,
      v.instruction !== undefined || v.output !== undefined,
    ];
    const n = shapes.filter(Boolean).length;
    if (n !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['messages'],
        message:
          n === 0
            ? 'missing the conversation: give messages, or prompt and completion, or instruction and output'
            : 'give exactly one of: messages | prompt+completion | instruction+output',
      });
      return;
    }
    if (shapes[1] && (v.prompt === undefined || v.completion === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [v.prompt === undefined ? 'prompt' : 'completion'],
        message: 'prompt and completion go together',
      });
    }
    if (shapes[2] && (v.instruction === undefined || v.output === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [v.instruction === undefined ? 'instruction' : 'output'],
        message: 'instruction and output go together',
      });
    }
    if (v.input !== undefined && !shapes[2])
      ctx.addIssue({ code: 'custom', path: ['input'], message: 'input belongs with instruction' });
  });
export type InteractionInput = z.output<typeof interactionSchema>;

export const batchSchema = z
  .object({
    interactions: z
      .array(interactionSchema)
      .min(1, 'a batch holds at least one interaction')
      .max(MAX_BATCH, `a batch holds at most ${MAX_BATCH} interactions`),
  })
  .strict();

/** An interaction in its canonical, stored form. */
export interface CanonicalInteraction {
  id?: string;
  model: string;
  subject: string;
  messages: ChatMessage[];
  metadata?: Record<string, unknown>;
}

/** Every shape becomes chat messages; instruction and input join with a blank line into the user turn. */
export function toMessages(i: InteractionInput): ChatMessage[] {
  if (i.messages) return i.messages;
  if (i.prompt !== undefined)
    return [
      { role: 'user', content: i.prompt },
      { role: 'assistant', content: i.completion! },
    ];
  const user = i.input ? `${i.instruction}\n\n${i.input}` : i.instruction!;
  return [
    { role: 'user', content: user },
    { role: 'assistant', content: i.output! },
  ];
}

export function canonicalize(i: InteractionInput): CanonicalInteraction {
  return {
    ...(i.id !== undefined ? { id: i.id } : {}),
    model: i.model,
    subject: i.subject,
    messages: toMessages(i),
    ...(i.metadata !== undefined ? { metadata: i.metadata } : {}),
  };
}
