import { createRedactor } from '../pii';
import { buildRow, type RowDecision, type SourceInteraction } from './rows';

/**
 * A redactor for one conversation (`<PERSON_1>` is the same person in every turn of it) that counts what it
 * redacts, by type, into `entities`.
 */
export function redactorCounting(entities: Record<string, number>): (text: string) => string {
  const redactor = createRedactor();
  return (text) => {
    const { text: redacted, entities: found } = redactor.redact(text);
    for (const e of found) entities[e.type] = (entities[e.type] ?? 0) + 1;
    return redacted;
  };
}

/**
 * What one interaction contributes ({@link buildRow}), with every text the app sent redacted — each turn and each
 * correction, by one redactor for the interaction. The model's own system prompt is operator text and is added
 * after redaction. The same interaction always gives the same bytes: anonymize writes these rows, and the run's
 * quality report shows its examples this way rather than keeping a copy.
 */
export function redactedRow(
  interaction: SourceInteraction,
  systemPrompt: string | null,
  entities: Record<string, number> = {},
): RowDecision {
  const redact = redactorCounting(entities);
  return buildRow(
    {
      ...interaction,
      messages: interaction.messages.map((m) => ({ role: m.role, content: redact(m.content) })),
      feedback: interaction.feedback.map((f) => ({
        ...f,
        correction: f.correction === null ? null : redact(f.correction),
      })),
    },
    systemPrompt,
  );
}
