import type { ApiKey } from '../database';
import type { Conn } from '../pool';

// The operator pages' sessions: the sha256 of each session's secret, the key it came from, its expiry.

export async function insertOperatorSession(
  db: Conn,
  s: { secretSha256: string; keyId: string; expiresAt: Date },
): Promise<void> {
  await db
    .insertInto('operator_sessions')
    .values({ secret_sha256: s.secretSha256, key_id: s.keyId, expires_at: s.expiresAt })
    .execute();
  // Expired sessions go as new ones come: the table holds live sessions and a few hours of dead ones.
  await db.deleteFrom('operator_sessions').where('expires_at', '<', new Date()).execute();
}

export async function deleteOperatorSession(db: Conn, secretSha256: string): Promise<void> {
  await db.deleteFrom('operator_sessions').where('secret_sha256', '=', secretSha256).execute();
}

/** The key behind a live session: unexpired, and its key not revoked. */
export async function sessionKey(db: Conn, secretSha256: string): Promise<ApiKey | undefined> {
  return db
    .selectFrom('operator_sessions as s')
    .innerJoin('api_keys as k', 'k.id', 's.key_id')
    .selectAll('k')
    .where('s.secret_sha256', '=', secretSha256)
    .where('s.expires_at', '>', new Date())
    .where('k.revoked_at', 'is', null)
    .executeTakeFirst();
}
