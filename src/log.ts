import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * One logger for everything outside workflow code. Secrets never reach it: credentials in connection strings,
 * API keys, authorization headers and cookies (the pages' sessions) are redacted by path.
 */
export function createLogger(level = process.env.LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tuneloop' },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-api-key"]',
          'req.headers.cookie',
          'res.headers["set-cookie"]',
          '*.password',
          '*.secretKey',
          '*.accessKey',
          '*.databaseUrl',
          '*.apiKey',
          'apiKey',
        ],
        censor: '***',
      },
    },
    destination ?? stderr(),
  );
}

/**
 * Standard error, written asynchronously. When it is gone (the terminal `up` ran in was closed, a pipe's reader
 * died) the logs have nowhere to go: that must not crash the process, which still has its servers to stop.
 */
function stderr(): pino.DestinationStream {
  const dest = pino.destination({ dest: 2, sync: false });
  dest.on('error', () => undefined);
  return dest;
}
