import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ZodError } from 'zod';
import { isTransientDbError } from '../db/pool';
import type { Logger } from '../log';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    /** Sent as Retry-After (seconds) when set. */
    readonly retryAfterS?: number,
  ) {
    super(message);
  }
}

interface ErrorBody {
  error: { code: string; message: string; field?: string; issues?: { field: string; message: string }[] };
}

function fieldOf(path: PropertyKey[], where: string): string {
  return [where, ...path.map(String)].join('.');
}

/** zod issues → one 400 naming the first bad field, with all of them listed. */
export function zodToHttp(err: ZodError, where: 'body' | 'query' | 'params'): ErrorBody {
  const issues = err.issues.map((i) => {
    const keys = i.code === 'unrecognized_keys' ? (i as { keys?: string[] }).keys : undefined;
    const path = keys?.length ? [...i.path, keys[0]!] : i.path;
    return { field: fieldOf(path, where), message: i.message };
  });
  const first = issues[0]!;
  return {
    error: { code: 'invalid_request', message: `${first.field}: ${first.message}`, field: first.field, issues },
  };
}

export function isTemporalUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; name?: string; message?: string };
  // gRPC UNAVAILABLE (14) / DEADLINE_EXCEEDED (4), or the client failing to connect.
  return (
    e?.code === 14 ||
    e?.code === 4 ||
    e?.name === 'TransportError' ||
    /UNAVAILABLE|failed to connect|Connection refused|transport error/i.test(String(e?.message ?? ''))
  );
}

export function errorMiddleware(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let status = 500;
    let body: ErrorBody = { error: { code: 'internal', message: 'internal error' } };
    if (err instanceof HttpError) {
      status = err.status;
      if (err.retryAfterS !== undefined) res.setHeader('Retry-After', String(err.retryAfterS));
      body = { error: { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) } };
    } else if (err instanceof ZodError) {
      status = 400;
      body = zodToHttp(err, 'body');
    } else if (err?.type === 'entity.too.large') {
      status = 413;
      body = {
        error: {
          code: 'payload_too_large',
          message: `request body exceeds the limit of ${err.limit} bytes`,
          field: 'body',
        },
      };
    } else if (err?.type === 'entity.invalid.utf8') {
      // body-parser re-labels what a body check throws as a 403: the type says what it was.
      status = 400;
      body = { error: { code: 'invalid_utf8', message: `${err.message}; nothing was stored`, field: err.field } };
    } else if (err?.type === 'charset.unsupported') {
      status = 415;
      body = { error: { code: 'unsupported_charset', message: String(err.message), field: 'body' } };
    } else if (err?.type === 'entity.parse.failed') {
      status = 400;
      body = { error: { code: 'invalid_json', message: 'request body is not valid JSON', field: 'body' } };
    } else if (typeof err?.status === 'number' && err.status >= 400 && err.status < 500) {
      status = err.status;
      body = { error: { code: 'bad_request', message: err.expose ? String(err.message) : 'bad request' } };
    } else if (isTransientDbError(err)) {
      status = 503;
      res.setHeader('Retry-After', '2');
      body = { error: { code: 'database_unavailable', message: 'the database is unavailable; retry shortly' } };
    } else if (isTemporalUnavailable(err)) {
      status = 503;
      res.setHeader('Retry-After', '2');
      body = {
        error: { code: 'workflow_engine_unavailable', message: 'the workflow engine is unavailable; retry shortly' },
      };
    }
    if (status >= 500) (req.log ?? log).error({ err }, 'request failed');
    res.status(status).json(body);
  };
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, 'not_found', `no route for ${req.method} ${req.path}`));
};
