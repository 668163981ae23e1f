import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { FailureType } from '../../src/domain/failures';
import { abortSignal } from '../../src/workflows/messages';
import {
  fakeActivities,
  names,
  recordedOutcome,
  runPipeline,
  useDecisionEnv,
  until,
  type Calls,
} from '../helpers/decisions';
import { ALL_STAGES } from '../helpers/stages';

/**
 * The pipeline's decisions, stage by stage, on Temporal's time-skipping test server with fake activities: how a run
 * ends (insufficient data, rejected at the gate, failed, aborted or cancelled in any stage), what is skipped and why,
 * and which failures are retried.
 */

const testEnv = useDecisionEnv();

const ALL_ON = { stages: ALL_STAGES };
const canary = { steps: [5, 25, 50, 100], holdSeconds: 600, minCalls: 0 };

/** An activity that runs (heartbeating) until it is cancelled, like a long stage the operator stops. */
const untilCancelled = (calls: Calls, name: string) => async (): Promise<never> => {
  calls.push({ name: name as never, input: null });
  const ctx = Context.current();
  for (;;) {
    ctx.heartbeat();
    await Promise.race([ctx.cancelled, new Promise((r) => setTimeout(r, 50))]);
  }
};

const stageStatus = (s: { stages: { name: string; status: string; reason: string | null }[] }, name: string) =>
  s.stages.find((x) => x.name === name)!;

describe('a run that goes through', () => {
  it('runs every stage in order and succeeds', async () => {
    const calls: Calls = [];
    const { result } = await runPipeline(
      testEnv(),
      fakeActivities({ ...ALL_ON, canary, judge: { model: 'j' } }, calls),
    );

    expect(result?.status).toBe('succeeded');
    expect(names(calls)).toEqual([
      'startRun',
      'collect',
      'anonymize',
      'exportDataset',
      'train',
      'evaluate',
      'judge',
      'decideGate',
      'register',
      'servingState',
      'setCanary',
      'compareCanary',
      'setCanary',
      'compareCanary',
      'setCanary',
      'compareCanary',
      'promote',
      'finishRun',
    ]);
    expect(stageStatus(result!, 'synthesize')).toMatchObject({
      status: 'skipped',
      reason: 'no synthesize config: no synthetic rows',
    });
    expect(recordedOutcome(calls)).toEqual({ status: 'succeeded', error: null });
  });

  it('scores between anonymize and export when the model has a score config, and exports the rows it kept', async () => {
    const calls: Calls = [];
    const { result } = await runPipeline(
      testEnv(),
      fakeActivities({ stages: { canary: false }, score: { judge: { provider: 'ollama', model: 'j' } } }, calls),
    );

    expect(result?.status).toBe('succeeded');
    expect(names(calls).slice(0, 5)).toEqual(['startRun', 'collect', 'anonymize', 'score', 'exportDataset']);
    const exported = calls.find((c) => c.name === 'exportDataset')!.input as { anonymized: { key: string } };
    expect(exported.anonymized.key).toBe('datasets/m/ds-1/work/scored.jsonl');
    expect(stageStatus(result!, 'score')).toMatchObject({ status: 'succeeded' });
  });

  it('synthesizes before scoring, and scores and exports the real and synthetic rows together', async () => {
    const calls: Calls = [];
    const synthesize = {
      teacher: { provider: 'ollama', model: 't' },
      specs: [{ name: 'faq', prompt: 'Ask a question about squats.', count: 10 }],
    };
    const { result } = await runPipeline(
      testEnv(),
      fakeActivities(
        { stages: { canary: false }, synthesize, score: { judge: { provider: 'ollama', model: 'j' } } },
        calls,
      ),
    );

    expect(result?.status).toBe('succeeded');
    expect(names(calls).slice(2, 6)).toEqual(['anonymize', 'synthesize', 'score', 'exportDataset']);
    const scored = calls.find((c) => c.name === 'score')!.input as { anonymized: { key: string } };
    expect(scored.anonymized.key).toBe('datasets/m/ds-1/work/synthesized.jsonl');
    expect(stageStatus(result!, 'synthesize')).toMatchObject({ status: 'succeeded' });
  });

  it('skips score, saying why, for a model without a score config', async () => {
    const calls: Calls = [];
    const { result } = await runPipeline(testEnv(), fakeActivities({ stages: { canary: false } }, calls));

    expect(names(calls)).not.toContain('score');
    expect(stageStatus(result!, 'score')).toMatchObject({
      status: 'skipped',
      reason: 'no score config: rows go to export unscored',
    });
  });

  it('with training switched off, skips what needs a trained or registered version and still succeeds', async () => {
    const calls: Calls = [];
    const { result } = await runPipeline(testEnv(), fakeActivities({ stages: { train: false, canary: false } }, calls));

    expect(result?.status).toBe('succeeded');
    expect(names(calls)).not.toContain('train');
    expect(stageStatus(result!, 'train')).toMatchObject({
      status: 'skipped',
      reason: 'switched off in the model config',
    });
    expect(stageStatus(result!, 'evaluate').reason).toBe('nothing was trained in this run');
    expect(stageStatus(result!, 'register').reason).toBe('nothing was trained in this run');
    expect(stageStatus(result!, 'canary').reason).toBe('switched off in the model config');
    expect(stageStatus(result!, 'promote').reason).toBe('nothing was registered in this run');
  });
});

describe('how a run ends early', () => {
  it('ends as insufficient_data when export has fewer examples than the model minimum, training nothing', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities({ ...ALL_ON, minExamples: 100 }, calls);

    const { result } = await runPipeline(testEnv(), fakes);

    expect(result?.status).toBe('insufficient_data');
    expect(names(calls)).not.toContain('train');
    expect(stageStatus(result!, 'train')).toMatchObject({
      status: 'skipped',
      reason: 'run ended as insufficient_data',
    });
    expect(recordedOutcome(calls)?.status).toBe('insufficient_data');
  });

  it('ends as rejected when the gate says no, registering nothing, with the reasons', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(ALL_ON, calls);
    fakes.decideGate = async () => ({ passed: false, checks: [], reasons: ['held-out loss 2.0 vs production 1.7'] });

    const { result } = await runPipeline(testEnv(), fakes);

    expect(result?.status).toBe('rejected');
    expect(names(calls)).not.toContain('register');
    expect(recordedOutcome(calls)).toEqual({
      status: 'rejected',
      error: 'candidate rejected: held-out loss 2.0 vs production 1.7',
    });
  });

  it('fails when register fails permanently (a parity mismatch), without retrying it or touching the canary', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(ALL_ON, calls);
    let attempts = 0;
    fakes.register = async () => {
      attempts++;
      throw ApplicationFailure.create({
        type: FailureType.PARITY_MISMATCH,
        message: 'parity: 2 of 8 prompts answered differently',
        nonRetryable: true,
      });
    };

    const { error } = await runPipeline(testEnv(), fakes);

    expect(error).toBeInstanceOf(WorkflowFailedError);
    // The activity's own words, not its wrapper's "Activity task failed", in the failure and in the run's record.
    expect((error as WorkflowFailedError).cause?.message).toBe(
      'pipeline failed: parity: 2 of 8 prompts answered differently',
    );
    expect(attempts).toBe(1);
    expect(names(calls)).not.toContain('endCanary');
    expect(recordedOutcome(calls)).toEqual({ status: 'failed', error: 'parity: 2 of 8 prompts answered differently' });
  });

  it.each(Object.values(FailureType).filter((t) => t !== 'WORKER_LOST'))(
    'retries %s only when it is not a permanent failure type',
    async (type) => {
      const calls: Calls = [];
      const fakes = fakeActivities(ALL_ON, calls);
      let attempts = 0;
      const real = fakes.exportDataset;
      fakes.exportDataset = async (input) => {
        attempts++;
        // Thrown as a plain retryable failure: the workflow's retry policy alone decides by type.
        if (attempts === 1) throw ApplicationFailure.create({ type, message: `first attempt: ${type}` });
        return real(input);
      };

      const { result } = await runPipeline(testEnv(), fakes);

      const permanent = [
        'CONFIG_INVALID',
        'MODEL_NOT_FOUND',
        'DATASET_INVALID',
        'GPU_OOM',
        'PARITY_MISMATCH',
        'INVALID_STATE',
      ];
      if (permanent.includes(type)) {
        expect([attempts, recordedOutcome(calls)?.status]).toEqual([1, 'failed']);
      } else {
        expect([attempts, result?.status]).toEqual([2, 'succeeded']);
      }
    },
  );
});

describe('abort and cancel', () => {
  const stages = [
    ['collect', 'collect'],
    ['anonymize', 'anonymize'],
    ['export', 'exportDataset'],
    ['train', 'train'],
    ['evaluate', 'evaluate'],
    ['register', 'register'],
  ] as const;

  it.each(stages)('an abort during %s stops the run there: aborted, the rest skipped', async (stage, activity) => {
    const calls: Calls = [];
    const fakes = fakeActivities(ALL_ON, calls);
    (fakes as Record<string, unknown>)[activity] = untilCancelled(calls, activity);

    const { result } = await runPipeline(testEnv(), fakes, async (handle) => {
      await until(handle, (s) => s.stage === stage);
      await handle.signal(abortSignal, { reason: 'operator said so', by: 'ops' });
    });

    expect(result?.status).toBe('aborted');
    expect(stageStatus(result!, stage).status).toBe('cancelled');
    expect(recordedOutcome(calls)).toEqual({ status: 'aborted', error: 'operator said so' });
    // A version registered and not promoted is taken out of the canary; before registration there is none.
    expect(names(calls).includes('endCanary')).toBe(false);
  });

  it('an abort during the canary hold takes the canary out and ends the run aborted', async () => {
    const calls: Calls = [];
    const { result } = await runPipeline(testEnv(), fakeActivities({ ...ALL_ON, canary }, calls), async (handle) => {
      await until(handle, (s) => s.canary?.percent === 5);
      await handle.signal(abortSignal, { reason: 'stop the canary' });
    });

    expect(result?.status).toBe('aborted');
    expect(names(calls)).toContain('endCanary');
    expect(names(calls)).not.toContain('promote');
  });

  it('an abort during promotion lets the promotion finish and record itself, then ends aborted', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities({ ...ALL_ON, stages: { ...ALL_ON.stages, canary: false } }, calls);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const real = fakes.promote;
    fakes.promote = async (input) => {
      await released;
      return real(input);
    };

    const { result } = await runPipeline(testEnv(), fakes, async (handle) => {
      await until(handle, (s) => s.stage === 'promote');
      await handle.signal(abortSignal, { reason: 'too late' });
      release();
    });

    expect(result?.status).toBe('aborted');
    expect(stageStatus(result!, 'promote').status).toBe('succeeded');
    expect(
      (calls.find((c) => c.name === 'finishRun')!.input as { result: { promoted: unknown } }).result.promoted,
    ).not.toBeNull();
  });

  it.each(stages)('cancelling the workflow during %s ends it cancelled, recorded', async (stage, activity) => {
    const calls: Calls = [];
    const fakes = fakeActivities(ALL_ON, calls);
    (fakes as Record<string, unknown>)[activity] = untilCancelled(calls, activity);

    const { error } = await runPipeline(testEnv(), fakes, async (handle) => {
      await until(handle, (s) => s.stage === stage);
      await handle.cancel();
    });

    expect(error?.message).toMatch(/cancel/i);
    expect(recordedOutcome(calls)).toEqual({ status: 'cancelled', error: 'workflow cancelled' });
  });
});
