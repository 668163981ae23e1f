import { WorkflowUpdateFailedError } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import type { CanaryVerdict } from '../../src/domain/canary';
import { approveUpdate } from '../../src/workflows/messages';
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
 * The canary stage's decisions and the operator's approval, on Temporal's time-skipping test server with fake
 * activities: traffic steps on durable timers (ten-minute holds, a 72-hour approval timeout) pass in milliseconds.
 */

const testEnv = useDecisionEnv();

const STEPS = [5, 25, 50, 100];
const config = (canary: Record<string, unknown> = {}, stages: Record<string, boolean> = {}) => ({
  stages: { ...ALL_STAGES, ...stages },
  canary: { steps: STEPS, holdSeconds: 600, minCalls: 0, ...canary },
});
const STATS = { calls: 50, errors: 0, p95LatencyMs: 50, feedback: 0, thumbsDown: 0, schemaChecked: 0, schemaValid: 0 };
const verdict = (v: CanaryVerdict['verdict'], reasons: string[] = []): CanaryVerdict => ({
  verdict: v,
  reasons,
  canary: STATS,
  production: STATS,
});

const percents = (calls: Calls) =>
  calls.filter((c) => c.name === 'setCanary').map((c) => (c.input as { percent: number }).percent);

describe('the canary', () => {
  it('steps through 5, 25 and 50 % with a comparison after each hold, then promotes', async () => {
    const calls: Calls = [];

    const { result } = await runPipeline(testEnv(), fakeActivities(config(), calls));

    expect(result?.status).toBe('succeeded');
    expect(percents(calls)).toEqual([5, 25, 50]);
    expect(names(calls).filter((n) => n === 'compareCanary')).toHaveLength(3);
    expect(result!.stages.find((s) => s.name === 'canary')!.summary).toEqual({
      outcome: 'passed',
      reasons: [],
      steps: [5, 25, 50],
      // Each comparison, with its step, for the run page.
      checks: [5, 25, 50].map((percent) => expect.objectContaining({ verdict: 'pass', percent, extension: 0 })),
    });
    expect(names(calls)).toContain('promote');
  });

  it.each([5, 25, 50])(
    'rolls back at once when the canary is worse at %i percent, and never promotes',
    async (failAt) => {
      const calls: Calls = [];
      const fakes = fakeActivities(config(), calls);
      fakes.compareCanary = async (input) => {
        calls.push({ name: 'compareCanary', input });
        const step = percents(calls).at(-1);
        return step === failAt ? verdict('fail', ['error rate 30.0 % vs 0.0 %']) : verdict('pass');
      };

      const { result } = await runPipeline(testEnv(), fakes);

      expect(result?.status).toBe('rolled_back');
      expect(percents(calls)).toEqual(STEPS.filter((p) => p <= failAt));
      expect(names(calls)).toContain('endCanary');
      expect(names(calls)).not.toContain('promote');
      expect(recordedOutcome(calls)?.error).toBe(
        `canary worse than production at ${failAt} %: error rate 30.0 % vs 0.0 %`,
      );
    },
  );

  it('gives the first version (no production yet) no traffic steps: nothing to compare it with', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(config(), calls);
    fakes.servingState = async () => ({ production: null, incumbent: false });

    const { result } = await runPipeline(testEnv(), fakes);

    expect(result?.status).toBe('succeeded');
    expect(percents(calls)).toEqual([]);
    expect(result!.stages.find((s) => s.name === 'canary')!.summary).toMatchObject({
      reasons: ['no production version yet: nothing to compare with, no traffic steps'],
    });
  });

  it('steps the first version up against the incumbent when the model has one, and rolls it back when worse', async () => {
    // Arrange
    const passing: Calls = [];
    const ok = fakeActivities(config(), passing);
    ok.servingState = async () => ({ production: null, incumbent: true });
    const failing: Calls = [];
    const worse = fakeActivities(config(), failing);
    worse.servingState = async () => ({ production: null, incumbent: true });
    worse.compareCanary = async (input: unknown) => {
      failing.push({ name: 'compareCanary', input });
      return verdict('fail', ['error rate 30.0 % vs 0.0 %']);
    };

    // Act
    const { result: promoted } = await runPipeline(testEnv(), ok);
    const { result: rolledBack } = await runPipeline(testEnv(), worse);

    // Assert
    expect(promoted?.status).toBe('succeeded');
    expect(percents(passing)).toEqual(STEPS.filter((p) => p < 100));
    expect(names(passing)).toContain('promote');
    expect(rolledBack?.status).toBe('rolled_back');
    expect(names(failing)).toContain('endCanary');
    expect(names(failing)).not.toContain('promote');
  });
});

describe('too little canary traffic', () => {
  const thin = (calls: Calls, enoughAfter = Infinity) => {
    let n = 0;
    return async (input: unknown) => {
      calls.push({ name: 'compareCanary', input });
      return ++n > enoughAfter ? verdict('pass') : verdict('insufficient', ['2 canary calls, 20 needed']);
    };
  };

  it('extends the hold while the evidence is thin, and goes on once it is enough', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(config({ maxExtensions: 3 }), calls);
    fakes.compareCanary = thin(calls, 2);

    const { result } = await runPipeline(testEnv(), fakes);

    expect(result?.status).toBe('succeeded');
    // 5 %: two thin windows, then a pass; 25 and 50 %: a pass each.
    expect(names(calls).filter((n) => n === 'compareCanary')).toHaveLength(5);
  });

  it('after the last extension, proceeds when insufficientTraffic is "proceed"', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(config({ maxExtensions: 2, insufficientTraffic: 'proceed' }), calls);
    fakes.compareCanary = thin(calls);

    const { result } = await runPipeline(testEnv(), fakes);

    expect(result?.status).toBe('succeeded');
    expect(percents(calls)).toEqual([5, 25, 50]);
    expect(names(calls).filter((n) => n === 'compareCanary')).toHaveLength(9);
  });

  it('after the last extension, rolls back when insufficientTraffic is "rollback"', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(config({ maxExtensions: 2, insufficientTraffic: 'rollback' }), calls);
    fakes.compareCanary = thin(calls);

    const { result } = await runPipeline(testEnv(), fakes);

    expect(result?.status).toBe('rolled_back');
    expect(percents(calls)).toEqual([5]);
    expect(recordedOutcome(calls)?.error).toBe('too little canary traffic at 5 %: 2 canary calls, 20 needed');
  });
});

describe('operator approval before 100 %', () => {
  // Holds of a second: the test drives these runs before it waits for them, in the run's own (unskipped) time.
  const approving = { requireApproval: true, approvalTimeoutHours: 72, holdSeconds: 1 };

  it('waits after the traffic steps, and an approval promotes', async () => {
    const calls: Calls = [];

    const { result } = await runPipeline(testEnv(), fakeActivities(config(approving), calls), async (handle) => {
      const waiting = await until(handle, (s) => s.canary?.awaitingApproval === true);
      expect(waiting.canary).toMatchObject({ percent: 50, approval: null });
      const answer = await handle.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'ops' }] });
      expect(answer.approval).toEqual({ approved: true, by: 'ops', reason: null });
    });

    expect(result?.status).toBe('succeeded');
    expect(names(calls)).toContain('promote');
  });

  it('a declined approval rolls the canary back with the operator’s reason', async () => {
    const calls: Calls = [];

    const { result } = await runPipeline(testEnv(), fakeActivities(config(approving), calls), async (handle) => {
      await until(handle, (s) => s.canary?.awaitingApproval === true);
      await handle.executeUpdate(approveUpdate, { args: [{ approved: false, by: 'ops', reason: 'wait for Monday' }] });
    });

    expect(result?.status).toBe('rolled_back');
    expect(names(calls)).not.toContain('promote');
    expect(recordedOutcome(calls)?.error).toBe('declined by ops: wait for Monday');
  });

  it('no answer within the timeout (72 h, skipped) is a no', async () => {
    const calls: Calls = [];

    const { result } = await runPipeline(testEnv(), fakeActivities(config(approving), calls));

    expect(result?.status).toBe('rolled_back');
    expect(recordedOutcome(calls)?.error).toBe('no approval within 72 h');
    expect(names(calls)).toContain('endCanary');
  });

  it('is refused while the run is not waiting for one, and a bad answer is refused too', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(config(approving), calls);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const real = fakes.register;
    fakes.register = async (input) => {
      await released;
      return real(input);
    };

    const { result } = await runPipeline(testEnv(), fakes, async (handle) => {
      await until(handle, (s) => s.stage === 'register');
      const early = handle.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'ops' }] });
      await expect(early).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
      release();
      await until(handle, (s) => s.canary?.awaitingApproval === true);
      const bad = handle.executeUpdate(approveUpdate, { args: [{ approved: 'yes' as never, by: '' }] });
      await expect(bad).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
      await handle.executeUpdate(approveUpdate, { args: [{ approved: true, by: 'ops' }] });
    });

    expect(result?.status).toBe('succeeded');
  });

  it('without a canary stage, the approval still comes before promotion', async () => {
    const calls: Calls = [];

    const { result } = await runPipeline(
      testEnv(),
      fakeActivities(config(approving, { canary: false }), calls),
      async (handle) => {
        const waiting = await until(handle, (s) => s.canary?.awaitingApproval === true);
        expect(waiting.stage).toBe('promote');
        await handle.executeUpdate(approveUpdate, { args: [{ approved: false, by: 'ops' }] });
      },
    );

    expect(result?.status).toBe('rolled_back');
    expect(percents(calls)).toEqual([]);
    expect(names(calls)).not.toContain('promote');
    expect(recordedOutcome(calls)?.error).toBe('declined by ops');
  });
});
