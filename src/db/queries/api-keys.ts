import type { ApiKey, Role } from '../database';
import type { Conn } from '../pool';

// API keys: only the sha256 of each key's secret is stored.

export async function insertApiKey(
  db: Conn,
  key: { id: string; secretSha256: string; name: string; role: Role; appId: string | null; models: string[] },
): Promise<void> {
  await db
    .insertInto('api_keys')
    .values({
      id: key.id,
      secret_sha256: key.secretSha256,
      name: key.name,
      role: key.role,
      app_id: key.appId,
      models: key.models,
    })
    .execute();
}

export async function getApiKey(db: Conn, id: string): Promise<ApiKey | undefined> {
  return db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function revokeApiKey(db: Conn, id: string): Promise<void> {
  await db.updateTable('api_keys').set({ revoked_at: new Date() }).where('id', '=', id).execute();
}
