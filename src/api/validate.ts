import type { Request } from 'express';
import type { z } from 'zod';
import { HttpError, zodToHttp } from './errors';

/** Parses one part of a request with its schema; a failure is a 400 naming the field. */
export function parse<T extends z.ZodType>(schema: T, req: Request, where: 'body' | 'query' | 'params'): z.output<T> {
  const input = where === 'body' ? req.body : where === 'query' ? { ...req.query } : { ...req.params };
  if (where === 'body' && (input === undefined || !req.is('application/json'))) {
    throw new HttpError(415, 'unsupported_media_type', 'send the body as application/json', 'body');
  }
  const res = schema.safeParse(input);
  if (!res.success) {
    const { error } = zodToHttp(res.error, where);
    throw new HttpError(400, error.code, error.message, error.field);
  }
  const nul = nulPath(res.data, [where]);
  if (nul) {
    const field = nul.join('.');
    throw new HttpError(400, 'invalid_request', `${field}: contains U+0000, which cannot be stored`, field);
  }
  return res.data;
}

/**
 * PostgreSQL text and jsonb cannot hold U+0000: left to the database it fails the insert as a 500. Walks the parsed
 * (schema-shaped, so shallow) value and returns the path of the first string or key holding one.
 */
function nulPath(value: unknown, path: string[]): string[] | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (typeof value !== 'object' || value === null) return null;
  for (const [k, v] of Object.entries(value)) {
    if (k.includes('\u0000')) return [...path, k];
    const found = nulPath(v, [...path, k]);
    if (found) return found;
  }
  return null;
}
