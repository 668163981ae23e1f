import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure, RetryState } from '@temporalio/common';
import type { ActivityExecuteInput } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { OllamaError } from '../../src/llm/ollama';
import {
  ClassifyFailuresInterceptor,
  FailureType,
  PERMANENT_FAILURES,
  permanentFailure,
} from '../../src/activities/failures';
import { failureMessage } from '../../src/workflows/run-status';

const input: ActivityExecuteInput = { args: [{ model: 'support-bot' }], headers: {} };

/** Runs the interceptor around an activity body and returns what it threw. */
async function thrownThrough(body: () => unknown): Promise<unknown> {
  const interceptor = new ClassifyFailuresInterceptor();
  try {
    await interceptor.execute(input, async () => body());
  } catch (err) {
    return err;
  }
  throw new Error('expected the activity to throw');
}

function zodErrorOf(schema: z.ZodType, value: unknown): z.ZodError {
  const r = schema.safeParse(value);
  if (r.success) throw new Error('expected a zod error');
  return r.error;
}

describe('ClassifyFailuresInterceptor', () => {
  it('returns the activity result and passes the input through untouched', async () => {
    // Arrange
    const interceptor = new ClassifyFailuresInterceptor();
    let seen: ActivityExecuteInput | undefined;

    // Act
    const result = await interceptor.execute(input, async (i) => {
      seen = i;
      return { rows: 3 };
    });

    // Assert
    expect(result).toEqual({ rows: 3 });
    expect(seen).toBe(input);
  });

  it.each([
    [0, 'OLLAMA_UNAVAILABLE', false],
    [503, 'OLLAMA_UNAVAILABLE', false],
    [500, 'OLLAMA_UNAVAILABLE', false],
    [400, 'CONFIG_INVALID', true],
  ])('classifies an Ollama answer of HTTP %i as %s (non-retryable: %s)', async (status, type, nonRetryable) => {
    // Act
    const err = await thrownThrough(() => {
      throw new OllamaError(status, `create m:v: HTTP ${status}`);
    });

    // Assert
    expect(err).toMatchObject({ type, nonRetryable, message: `create m:v: HTTP ${status}` });
  });

  it('turns a ZodError into a non-retryable CONFIG_INVALID failure naming the path', async () => {
    // Arrange
    const schema = z.object({ config: z.object({ validationShare: z.number().max(0.5) }) });
    const zodError = zodErrorOf(schema, { config: { validationShare: 0.9 } });

    // Act
    const err = await thrownThrough(() => {
      throw zodError;
    });

    // Assert
    expect(err).toBeInstanceOf(ApplicationFailure);
    const failure = err as ApplicationFailure;
    expect(failure.type).toBe(FailureType.CONFIG_INVALID);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain('config.validationShare');
    expect(failure.message).toContain(zodError.issues[0]!.message);
  });

  it('classifies a ZodError thrown by an async activity body', async () => {
    // Arrange
    const zodError = zodErrorOf(z.string(), 42);

    // Act
    const err = await thrownThrough(async () => {
      await Promise.resolve();
      throw zodError;
    });

    // Assert: a root-level issue has an empty path, so the message says "value".
    expect(err).toMatchObject({
      type: 'CONFIG_INVALID',
      nonRetryable: true,
      message: expect.stringMatching(/^invalid value: /),
    });
  });

  it.each<[string, () => Error]>([
    ['a plain Error', () => new Error('connection reset')],
    ['a TypeError', () => new TypeError('x is not a function')],
    ['a retryable ApplicationFailure', () => ApplicationFailure.retryable('try again', 'TRANSIENT')],
    ['a permanent failure raised by the activity', () => permanentFailure(FailureType.MODEL_NOT_FOUND, 'no model')],
  ])('passes %s through unchanged', async (_label, make) => {
    // Arrange
    const original = make();

    // Act
    const err = await thrownThrough(() => {
      throw original;
    });

    // Assert
    expect(err).toBe(original);
  });
});

describe('permanentFailure', () => {
  it('creates a non-retryable ApplicationFailure carrying type and details', () => {
    // Act
    const failure = permanentFailure(FailureType.DATASET_INVALID, 'no rows', { rows: 0 });

    // Assert
    expect(failure).toMatchObject({ type: 'DATASET_INVALID', message: 'no rows', nonRetryable: true });
    expect(failure.details).toEqual([{ rows: 0 }]);
  });

  it('treats store integrity problems, trainer crashes, a held run lock and an unavailable Ollama as retryable and the others as permanent', () => {
    // Assert
    expect(PERMANENT_FAILURES).not.toContain(FailureType.STORE_INTEGRITY);
    expect(PERMANENT_FAILURES).not.toContain(FailureType.TRAINER_CRASHED);
    expect(PERMANENT_FAILURES).not.toContain(FailureType.TRAINER_INTERRUPTED);
    expect(PERMANENT_FAILURES).not.toContain(FailureType.RUN_LOCKED);
    expect(PERMANENT_FAILURES).not.toContain(FailureType.OLLAMA_UNAVAILABLE);
    expect([...PERMANENT_FAILURES].sort()).toEqual([
      'CONFIG_INVALID',
      'DATASET_INVALID',
      'GPU_OOM',
      'INVALID_STATE',
      'MODEL_NOT_FOUND',
      'PARITY_MISMATCH',
    ]);
  });
});

describe('failureMessage', () => {
  const wrapped = (cause: Error) =>
    new ActivityFailure('Activity task failed', 'train', '7', RetryState.MAXIMUM_ATTEMPTS_REACHED, 'worker', cause);

  it("gives the activity's own words, not its wrapper's", () => {
    const err = new ChildWorkflowFailure(
      'default',
      { workflowId: 'w', runId: 'r' },
      'Child',
      RetryState.NON_RETRYABLE_FAILURE,
      wrapped(ApplicationFailure.create({ message: 'the GPU ran out of memory' })),
    );
    expect(failureMessage(err)).toBe('the GPU ran out of memory');
  });

  it('falls back to the nearest wrapper when the cause has no words, or to its type, and says so when none has', () => {
    const child = (cause: Error) =>
      new ChildWorkflowFailure(
        'default',
        { workflowId: 'w', runId: 'r' },
        'Child',
        RetryState.NON_RETRYABLE_FAILURE,
        cause,
      );
    expect(failureMessage(child(wrapped(ApplicationFailure.create({ message: '' }))))).toBe('Activity task failed');
    expect(failureMessage(wrapped(ApplicationFailure.create({ message: '', type: 'OutOfMemory' })))).toBe(
      'OutOfMemory',
    );
    expect(failureMessage(new Error(''))).toBe('failed with no message');
  });
});
