import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import type { Logger } from '../log';

const LEVELS: Record<string, LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
  fatal: 'ERROR',
  silent: 'ERROR',
};

let installed = false;

/**
 * Sends the Temporal SDK's logs (its own and the Rust core's, forwarded) through our pino logger, so workers log
 * one format with the same redaction. Must run before the first worker or native connection; later calls no-op.
 */
const PINO_METHOD = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const;

export function installTemporalRuntime(log: Logger, level = log.level): void {
  if (installed) return;
  installed = true;
  const sdkLevel = LEVELS[level] ?? 'INFO';
  const temporalLog = log.child({ component: 'temporal-sdk' });
  Runtime.install({
    // The SDK would otherwise shut every worker down by itself on SIGINT/SIGTERM, racing our own ordered stop
    // (Stack: the API first, then the workers, then the servers) — and on SIGUSR2 and SIGQUIT too.
    shutdownSignals: [],
    logger: new DefaultLogger(sdkLevel, ({ level: l, message, meta }) => {
      // An activity-only worker (the GPU worker) is meant to have no workflows; the SDK warns about it anyway.
      const method = message.startsWith('No workflows registered') ? 'debug' : PINO_METHOD[l];
      temporalLog[method](meta ?? {}, message);
    }),
    telemetryOptions: {
      logging: { filter: { core: sdkLevel === 'TRACE' ? 'DEBUG' : sdkLevel, other: 'ERROR' }, forward: {} },
    },
  });
}
