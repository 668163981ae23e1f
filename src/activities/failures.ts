import { ApplicationFailure } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from '@temporalio/worker';
import { ZodError } from 'zod';
import { FailureType } from '../domain/failures';
import { OllamaError } from '../llm/ollama';

export { FailureType, PERMANENT_FAILURES } from '../domain/failures';

export function permanentFailure(type: FailureType, message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: details ? [details] : [] });
}

export function retryableFailure(type: FailureType, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: false });
}

/**
 * Classifies third-party errors in one place rather than in scattered try/catch: a zod error inside an
 * activity means stored data or config is invalid, which no retry will change. Everything else (network,
 * database restarts) stays retryable.
 */
export class ClassifyFailuresInterceptor implements ActivityInboundCallsInterceptor {
  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    try {
      return await next(input);
    } catch (err) {
      if (err instanceof ZodError) {
        const first = err.issues[0];
        throw permanentFailure(
          FailureType.CONFIG_INVALID,
          `invalid ${first?.path.join('.') || 'value'}: ${first?.message ?? err.message}`,
        );
      }
      if (err instanceof OllamaError) {
        // A request Ollama refuses as malformed (a bad template, an unknown option) fails the same way every time.
        if (err.status === 400) throw permanentFailure(FailureType.CONFIG_INVALID, err.message);
        throw retryableFailure(FailureType.OLLAMA_UNAVAILABLE, err.message);
      }
      throw err;
    }
  }
}
