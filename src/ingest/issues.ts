import type { ZodError } from 'zod';

export interface FieldIssue {
  /** Dotted path of the field at fault (`messages.1.role`); empty for the value as a whole. */
  field: string;
  message: string;
}

/** zod issues as field paths; an unknown key is named by its own path rather than its parent's. */
export function fieldIssues(err: ZodError): FieldIssue[] {
  return err.issues.map((i) => {
    const keys = i.code === 'unrecognized_keys' ? (i as { keys?: string[] }).keys : undefined;
    const path = keys?.length ? [...i.path, keys[0]!] : i.path;
    return { field: path.map(String).join('.'), message: i.message };
  });
}

/** One line for a person: `messages.1.role: expected a user turn here …`. */
export function describeIssue(i: FieldIssue): string {
  return i.field ? `${i.field}: ${i.message}` : i.message;
}
