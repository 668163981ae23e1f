import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Db } from '../db/pool';
import type { ApiKey, Role } from '../db/database';
import { getApiKey, insertApiKey } from '../db/queries/api-keys';
import { HttpError } from './errors';

export interface Principal {
  keyId: string;
  name: string;
  role: Role;
  appId: string | null;
  /** Models an app key may read and write; null means all (operator, admin). */
  models: readonly string[] | null;
}

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

const KEY_RE = /^tl_([a-f0-9]{12})_([A-Za-z0-9_-]{43})$/;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** Makes a key. The plaintext is returned once and never stored: only the sha256 of its 256-bit secret. */
export async function createApiKey(
  db: Db,
  input: { name: string; role: Role; appId: string | null; models: string[] },
): Promise<{ id: string; key: string }> {
  if (input.role === 'app' && !input.appId) throw new Error('an app key needs an app');
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  await insertApiKey(db, {
    id,
    secretSha256: sha256(secret),
    name: input.name,
    role: input.role,
    appId: input.appId,
    models: input.models,
  });
  return { id, key: `tl_${id}_${secret}` };
}

/** The key's principal, or null when it is malformed, unknown, revoked or its secret does not match. */
export async function verifyKey(db: Db, token: string): Promise<Principal | null> {
  const m = KEY_RE.exec(token);
  if (!m) return null;
  const row = await getApiKey(db, m[1]!);
  const ok =
    row && !row.revoked_at && timingSafeEqual(Buffer.from(row.secret_sha256, 'hex'), Buffer.from(sha256(m[2]!), 'hex'));
  if (!ok) return null;
  return principalOfKey(row);
}

export function principalOfKey(row: ApiKey): Principal {
  return {
    keyId: row.id,
    name: row.name,
    role: row.role,
    appId: row.app_id,
    models: row.role === 'app' ? row.models : null,
  };
}

/**
 * Checks the bearer key. A key that checked out is remembered for `cacheMs` (by a hash of it, never the key
 * itself), so a busy app's calls cost no database round trip; a revoked key stops working within that time.
 */
export function authenticate(db: Db, opts: { cacheMs?: number } = {}): RequestHandler {
  const cacheMs = opts.cacheMs ?? 10_000;
  const known = new Map<string, { principal: Principal; at: number }>();
  return async (req, _res, next) => {
    try {
      const header = req.get('authorization') ?? '';
      const token = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
      if (!token) throw new HttpError(401, 'unauthenticated', 'missing API key: send "Authorization: Bearer <key>"');
      const cacheKey = sha256(token);
      const hit = known.get(cacheKey);
      if (hit && Date.now() - hit.at < cacheMs) {
        req.principal = hit.principal;
        return next();
      }
      const principal = await verifyKey(db, token);
      if (!principal) throw new HttpError(401, 'unauthenticated', 'invalid API key');
      req.principal = principal;
      if (cacheMs > 0) {
        if (known.size >= 10_000) known.delete(known.keys().next().value!);
        known.set(cacheKey, { principal: req.principal, at: Date.now() });
      }
      next();
    } catch (err) {
      next(err);
    }
  };
}

export function requireRole(...roles: Role[]): RequestHandler {
  return (req, _res, next) => {
    const p = req.principal;
    if (!p) return next(new HttpError(401, 'unauthenticated', 'missing API key'));
    if (p.role !== 'admin' && !roles.includes(p.role)) {
      return next(new HttpError(403, 'forbidden', `this needs the ${roles.join(' or ')} role; the key has ${p.role}`));
    }
    next();
  };
}

export function principalOf(req: { principal?: Principal }): Principal {
  if (!req.principal) throw new HttpError(401, 'unauthenticated', 'missing API key');
  return req.principal;
}

/** An app key sees only its own models; the answer is the same whether or not the model exists. */
export function assertModelAccess(p: Principal, model: string, field = 'model'): void {
  if (p.models && !p.models.includes(model)) {
    throw new HttpError(403, 'forbidden', `model ${model} is not accessible with this key`, field);
  }
}

export const actorOf = (p: Principal) => `key:${p.keyId}(${p.name})`;
