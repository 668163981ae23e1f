import { z } from 'zod';
import { externalId, text } from './text';

/** Free-text comments are notes, not training data: a smaller cap than a corrected answer. */
export const MAX_COMMENT_CHARS = 10_000;

/**
 * A user's feedback on one interaction: a thumb, a 1–5 rating and/or a corrected answer, with an optional comment.
 * `id` is the app's own id for it, so a retried POST is recognised.
 */
export const feedbackSchema = z
  .object({
    id: externalId.optional(),
    thumbs: z.enum(['up', 'down']).optional(),
    rating: z.number().int('a whole number from 1 to 5').min(1, 'from 1 to 5').max(5, 'from 1 to 5').optional(),
    correction: text().optional(),
    comment: text(MAX_COMMENT_CHARS).optional(),
  })
  .strict()
  .refine((f) => f.thumbs !== undefined || f.rating !== undefined || f.correction !== undefined, {
    message: 'give at least one of thumbs, rating or correction',
  });
export type FeedbackInput = z.output<typeof feedbackSchema>;
