import { createRequire } from 'node:module';
import path from 'node:path';
import express, { Router, type RequestHandler } from 'express';
import { openApiDocument } from './openapi';

/** swagger-ui-dist's folder, found as Node finds the package: the files are served from it, never from a CDN. */
const SWAGGER_UI_DIR = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
/** The page and its init script. */
const PAGE_DIR = path.join(import.meta.dirname, 'docs-ui');
/** What the page loads of swagger-ui-dist; not its own index.html and initializer, which point at the petstore. */
const SWAGGER_UI_FILES = new Set(['/swagger-ui.css', '/swagger-ui-bundle.js', '/favicon-32x32.png']);

/**
 * Everything from this origin, no inline script. Swagger UI sets styles inline and draws icons from data: URLs; it
 * fetches only the document.
 */
export const DOCS_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const withCsp: RequestHandler = (_req, res, next) => {
  res.setHeader('content-security-policy', DOCS_CSP);
  res.setHeader('x-content-type-options', 'nosniff');
  next();
};

/** GET /openapi.json (openapi.ts) and GET /docs, the document rendered by Swagger UI. No key needed for either. */
export function createDocsRouter() {
  const router = Router();
  router.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });

  const uiFiles = express.static(SWAGGER_UI_DIR, { index: false });
  router.use('/docs', withCsp);
  // The page's files are relative to /docs/: the bare /docs is sent there (relatively, so behind a path prefix too).
  router.get('/docs', (req, res) => {
    if (!req.path.endsWith('/')) return res.redirect(301, 'docs/');
    res.sendFile('index.html', { root: PAGE_DIR });
  });
  router.use('/docs', express.static(PAGE_DIR, { index: false }));
  router.use('/docs', (req, res, next) => (SWAGGER_UI_FILES.has(req.path) ? uiFiles(req, res, next) : next()));
  return router;
}
