import { createHash, randomBytes } from 'node:crypto';
import { parse as parseCookies, serialize } from 'cookie';
import type { Request, Response } from 'express';
import type { Db } from '../../db/pool';
import { deleteOperatorSession, insertOperatorSession, sessionKey } from '../../db/queries/operator-sessions';
import { principalOfKey, type Principal } from '../auth';

// Operator sessions for the pages: an operator key, typed once into the login form, is exchanged for a random
// session secret in an HttpOnly, SameSite=Strict cookie. The key never travels again, never appears in a URL, and
// is not stored; PostgreSQL keeps the sha256 of the session secret. A session ends at its expiry, at sign-out, or
// when its key is revoked (checked on every request).

export const SESSION_COOKIE = 'tuneloop_session';
export const SESSION_HOURS = 12;
const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export async function startSession(db: Db, res: Response, req: Request, p: Principal): Promise<void> {
  const secret = randomBytes(32).toString('base64url');
  const expires = new Date(Date.now() + SESSION_HOURS * 3600_000);
  await insertOperatorSession(db, { secretSha256: sha256(secret), keyId: p.keyId, expiresAt: expires });
  res.append('Set-Cookie', cookieFor(req, secret, expires));
}

export async function endSession(db: Db, req: Request, res: Response): Promise<void> {
  const secret = sessionSecret(req);
  if (secret) await deleteOperatorSession(db, sha256(secret));
  res.append('Set-Cookie', cookieFor(req, '', new Date(0)));
}

/** The session's operator, or null: no cookie, an unknown or expired session, or a revoked key. */
export async function sessionPrincipal(db: Db, req: Request): Promise<Principal | null> {
  const secret = sessionSecret(req);
  if (!secret) return null;
  const row = await sessionKey(db, sha256(secret));
  if (!row || (row.role !== 'operator' && row.role !== 'admin')) return null;
  return principalOfKey(row);
}

function sessionSecret(req: Request): string | null {
  const header = req.headers.cookie;
  if (!header) return null;
  const value = parseCookies(header)[SESSION_COOKIE];
  return value && SECRET_RE.test(value) ? value : null;
}

function cookieFor(req: Request, value: string, expires: Date): string {
  return serialize(SESSION_COOKIE, value, {
    httpOnly: true,
    sameSite: 'strict',
    // Behind TLS (or a proxy that terminates it and says so) the cookie never goes over plain HTTP.
    secure: req.secure || req.get('x-forwarded-proto') === 'https',
    path: '/ui',
    expires,
  });
}
