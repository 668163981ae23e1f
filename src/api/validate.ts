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
  return res.data;
}
