import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../database';

export async function audit(
  db: Kysely<Database> | Transaction<Database>,
  entry: { actor: string; action: string; targetType: string; targetId: string; details?: Record<string, unknown> },
): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({
      actor: entry.actor,
      action: entry.action,
      target_type: entry.targetType,
      target_id: entry.targetId,
      details: JSON.stringify(entry.details ?? {}),
    })
    .execute();
}
