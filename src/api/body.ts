import express, { type RequestHandler } from 'express';
import { describeInvalidUtf8, invalidUtf8InJson } from '../ingest/utf8';

/** The error a request body that is not UTF-8 is refused with (mapped to a 400 naming the field by errorMiddleware). */
export class InvalidUtf8Body extends Error {
  readonly type = 'entity.invalid.utf8';
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

/**
 * JSON request bodies. body-parser decodes bytes that are not UTF-8 into U+FFFD without a word, which would store
 * an app's data changed; the raw bytes are checked first, and such a body is refused naming the field that holds
 * them, before anything reads it. JSON is UTF-8 (RFC 8259): another declared charset is refused too.
 */
export function jsonBody(limit: string): RequestHandler {
  return express.json({
    limit,
    strict: true,
    verify: (_req, _res, buf, encoding) => {
      if (encoding.toLowerCase() !== 'utf-8' && encoding.toLowerCase() !== 'utf8') {
        throw Object.assign(new Error(`unsupported charset "${encoding.toUpperCase()}": send JSON as UTF-8`), {
          type: 'charset.unsupported',
        });
      }
      const bad = invalidUtf8InJson(buf, 'body');
      if (bad) throw new InvalidUtf8Body(describeInvalidUtf8(bad), bad.field);
    },
  });
}

/**
 * Percent-encoded bytes in the path and query string must be UTF-8 too: Node's query parser turns `%FF` into U+FFFD
 * as silently as a body parser would, and a subject or app id changed that way would name someone else's data.
 */
export const strictUrlEncoding: RequestHandler = (req, _res, next) => {
  const [pathname, query = ''] = req.originalUrl.split('?', 2) as [string, string?];
  if (!decodes(pathname)) return next(new InvalidUtf8Url('path', 'the path is not valid percent-encoded UTF-8'));
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    const shownName = decodes(name) ? decodeURIComponent(name.replace(/\+/g, ' ')) : '(a parameter name)';
    if (!decodes(name) || !decodes(value)) {
      const field = `query.${shownName}`;
      return next(new InvalidUtf8Url(field, `${field}: not valid percent-encoded UTF-8`));
    }
  }
  next();
};

class InvalidUtf8Url extends InvalidUtf8Body {
  constructor(field: string, message: string) {
    super(message, field);
  }
}

function decodes(s: string): boolean {
  try {
    decodeURIComponent(s.replace(/\+/g, ' '));
    return true;
  } catch {
    return false;
  }
}
