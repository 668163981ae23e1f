import type { ErrorRequestHandler, RequestHandler } from 'express';
import { z, ZodError } from 'zod';
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

/** Every error tuneloop's own routes answer (the OpenAI surface has its own shape): the OpenAPI `Error` schema. */
export const errorBodySchema = z
  .object({
    error: z
      .object({
        code: z.string().meta({ description: 'What went wrong, for programs: invalid_request, not_found, …' }),
        message: z.string().meta({ description: 'What went wrong, for people.' }),
        field: z.string().optional().meta({ description: 'The field at fault: body.messages.1.role, query.model…' }),
        issues: z.array(z.object({ field: z.string(), message: z.string() }).strict()).optional(),
      })
      .strict(),
  })
  .strict();
export type ErrorBody = z.output<typeof errorBodySchema>;

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

/** What an error thrown while handling a request is answered with: status, body, and Retry-After if any. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody; retryAfterS?: number } {
  const e = err as {
    type?: string;
    limit?: number;
    message?: string;
    field?: string;
    status?: unknown;
    expose?: boolean;
  };
  if (err instanceof HttpError) {
    return {
      status: err.status,
      retryAfterS: err.retryAfterS,
      body: { error: { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) } },
    };
  }
  if (err instanceof ZodError) return { status: 400, body: zodToHttp(err, 'body') };
  if (e?.type === 'entity.too.large') {
    const message = `request body exceeds the limit of ${e.limit} bytes`;
    return { status: 413, body: { error: { code: 'payload_too_large', message, field: 'body' } } };
  }
  if (e?.type === 'entity.invalid.utf8') {
    // body-parser re-labels what a body check throws as a 403: the type says what it was.
    const message = `${e.message}; nothing was stored`;
    return { status: 400, body: { error: { code: 'invalid_utf8', message, field: e.field } } };
  }
  if (e?.type === 'charset.unsupported') {
    return { status: 415, body: { error: { code: 'unsupported_charset', message: String(e.message), field: 'body' } } };
  }
  if (e?.type === 'entity.parse.failed') {
    const message = 'request body is not valid JSON';
    return { status: 400, body: { error: { code: 'invalid_json', message, field: 'body' } } };
  }
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    const message = e.expose ? String(e.message) : 'bad request';
    return { status: e.status, body: { error: { code: 'bad_request', message } } };
  }
  if (isTransientDbError(err)) {
    const message = 'the database is unavailable; retry shortly';
    return { status: 503, retryAfterS: 2, body: { error: { code: 'database_unavailable', message } } };
  }
  if (isTemporalUnavailable(err)) {
    const message = 'the workflow engine is unavailable; retry shortly';
    return { status: 503, retryAfterS: 2, body: { error: { code: 'workflow_engine_unavailable', message } } };
  }
  return { status: 500, body: { error: { code: 'internal', message: 'internal error' } } };
}

export function errorMiddleware(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const { status, body, retryAfterS } = errorResponse(err);
    if (retryAfterS !== undefined) res.setHeader('Retry-After', String(retryAfterS));
    if (status >= 500) (req.log ?? log).error({ err }, 'request failed');
    res.status(status).json(body);
  };
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, 'not_found', `no route for ${req.method} ${req.path}`));
};
