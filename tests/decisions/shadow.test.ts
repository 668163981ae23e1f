import { describe, expect, it } from 'vitest';
import type { ShadowVerdict } from '../../src/domain/shadow';
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
 * The shadow stage's decisions on Temporal's time-skipping test server with fake activities: where it runs (by
 * default only with a hosted incumbent), holds and extensions on durable timers, and what a worse or thin shadow
 * leads to. What the API does with the shadow alias is in tests/api/shadow.test.ts.
 */

const testEnv = useDecisionEnv();

const INCUMBENT = { baseUrl: 'https://api.example.com/v1', model: 'hosted', apiKeyEnv: 'HOSTED_KEY' };
const config = (shadow: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  stages: ALL_STAGES,
  incumbent: INCUMBENT,
  canary: { steps: [50, 100], holdSeconds: 600, minCalls: 0 },
  shadow: { holdSeconds: 1800, ...shadow },
  ...extra,
});
const verdict = (v: ShadowVerdict['verdict'], reasons: string[] = []): ShadowVerdict => ({
  verdict: v,
  reasons,
  pairs: 40,
  dropped: 0,
  errorRate: 0,
  latencyRatio: 1,
  winOrTie: { judged: 40, rate: 0.3, ci95: [0.18, 0.45] },
});
const verdicts = (calls: Calls, ...seq: ShadowVerdict[]) => {
  let i = 0;
  return async (input: unknown) => {
    calls.push({ name: 'compareShadow', input });
    return seq[Math.min(i++, seq.length - 1)]!;
  };
};
const endShadows = (calls: Calls) =>
  calls.filter((c) => c.name === 'endShadow').map((c) => (c.input as { rolledBack: boolean }).rolledBack);

describe('the shadow stage', () => {
  it('runs between register and the canary where the model has an incumbent, and a passing shadow goes on', async () => {
    const calls: Calls = [];

    const { result } = await runPipeline(testEnv(), fakeActivities(config(), calls));

    expect(result?.status).toBe('succeeded');
    const order = names(calls).filter((n) =>
      ['register', 'setShadow', 'compareShadow', 'endShadow', 'setCanary', 'promote'].includes(n),
    );
    expect(order).toEqual(['register', 'setShadow', 'compareShadow', 'endShadow', 'setCanary', 'promote']);
    expect(endShadows(calls)).toEqual([false]);
    expect(result!.stages.find((s) => s.name === 'shadow')!.summary).toMatchObject({ outcome: 'passed' });
  });

  it('rolls a worse candidate back before any user sees it: no canary, the reason recorded', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(config(), calls);
    fakes.compareShadow = verdicts(calls, verdict('fail', ['win-or-tie rate 30.0 % below 50.0 %']));

    const { result } = await runPipeline(testEnv(), fakes);

    expect(result?.status).toBe('rolled_back');
    expect(names(calls)).not.toContain('setCanary');
    expect(endShadows(calls)).toEqual([true]);
    expect(recordedOutcome(calls)?.error).toBe(
      'shadow: candidate worse than production: win-or-tie rate 30.0 % below 50.0 %',
    );
  });

  it('extends the hold while the evidence is thin, then rolls back or proceeds as configured', async () => {
    const thin = verdict('insufficient', ['3 shadow pairs, 30 needed']);
    const back: Calls = [];
    const rollback = fakeActivities(config({ maxExtensions: 2 }), back);
    rollback.compareShadow = verdicts(back, thin);
    const on: Calls = [];
    const proceed = fakeActivities(config({ maxExtensions: 1, insufficientTraffic: 'proceed' }), on);
    proceed.compareShadow = verdicts(on, thin);

    const [{ result: rolled }, { result: went }] = [
      await runPipeline(testEnv(), rollback),
      await runPipeline(testEnv(), proceed),
    ];

    expect(rolled?.status).toBe('rolled_back');
    expect(names(back).filter((n) => n === 'compareShadow')).toHaveLength(3);
    expect(recordedOutcome(back)?.error).toBe('too little shadow evidence: 3 shadow pairs, 30 needed');
    expect(went?.status).toBe('succeeded');
    expect(names(on).filter((n) => n === 'compareShadow')).toHaveLength(2);
    expect(endShadows(on)).toEqual([false]);
    expect(names(on)).toContain('setCanary');
  });

  it('is skipped by default without an incumbent, and runs when switched on for local production', async () => {
    const off: Calls = [];
    const { result: skipped } = await runPipeline(
      testEnv(),
      fakeActivities({ stages: ALL_STAGES, canary: { steps: [100] } }, off),
    );
    const on: Calls = [];
    const { result: shadowed } = await runPipeline(
      testEnv(),
      fakeActivities(
        { stages: { ...ALL_STAGES, shadow: true }, canary: { steps: [100] }, shadow: { holdSeconds: 60 } },
        on,
      ),
    );

    expect(skipped?.status).toBe('succeeded');
    expect(names(off)).not.toContain('setShadow');
    expect(skipped!.stages.find((s) => s.name === 'shadow')).toMatchObject({
      status: 'skipped',
      reason: expect.stringContaining('no incumbent'),
    });
    expect(names(on)).toContain('setShadow');
    expect(shadowed?.status).toBe('succeeded');
  });

  it('has nothing to shadow while nothing serves the model, and goes on to the canary', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(
      { stages: { ...ALL_STAGES, shadow: true }, canary: { steps: [100] }, shadow: { holdSeconds: 60 } },
      calls,
    );
    fakes.servingState = async () => ({ production: null, incumbent: false });

    const { result } = await runPipeline(testEnv(), fakes);

    expect(result?.status).toBe('succeeded');
    expect(names(calls)).not.toContain('setShadow');
    expect(result!.stages.find((s) => s.name === 'shadow')!.summary).toMatchObject({
      outcome: 'skipped',
      reasons: ['nothing serves the model yet: no calls to shadow'],
    });
    expect(names(calls)).toContain('promote');
  });

  it('takes the shadow alias off a run aborted during the hold', async () => {
    const calls: Calls = [];

    const { result } = await runPipeline(
      testEnv(),
      fakeActivities(config({ holdSeconds: 24 * 3600 }), calls),
      async (h) => {
        await until(h, (s) => s.stage === 'shadow' && calls.some((c) => c.name === 'setShadow'));
        await h.signal(abortSignal, { reason: 'operator changed their mind', by: 'ops' });
      },
    );

    expect(result?.status).toBe('aborted');
    // endCanary takes out whatever alias still points at the version, the shadow's included.
    expect(names(calls)).toContain('endCanary');
    expect(names(calls)).not.toContain('setCanary');
  });
});
