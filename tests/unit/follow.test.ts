import { describe, expect, it } from 'vitest';
import { describeStage, progressBar, progressLine } from '../../src/cli/follow';

const training = {
  step: 12,
  totalSteps: 40,
  loss: 2.31,
  tokensPerS: 512.4,
  etaS: 80,
  attempt: 1,
  checkpointStep: 10,
  lastHeartbeatAt: '2026-12-04T02:00:00.000Z',
};

describe('run --follow lines', () => {
  it('draws the training bar in proportion to the steps, within the width, with loss, speed and ETA', () => {
    // Act
    const bar = progressBar(training, 80);

    // Assert
    expect(bar.length).toBeLessThanOrEqual(80);
    const [, done, left] = /\[(#*)(-*)\]/.exec(bar)!;
    expect(done!.length / (done!.length + left!.length)).toBeCloseTo(12 / 40, 1);
    expect(bar).toContain('step 12/40  loss 2.310  512 tok/s  ETA 1m20s');
    expect(progressLine({ ...training, attempt: 2, etaS: 7260 })).toBe(
      '  train    step 12/40  loss 2.310  512 tok/s  ETA 2h01m  attempt 2',
    );
  });

  it('says each ended stage in one line: time and figures, or why it was skipped or failed', () => {
    const base = { startedAt: '2026-12-04T02:00:00.000Z', endedAt: '2026-12-04T02:00:02.500Z', reason: null };
    expect(
      describeStage({
        ...base,
        name: 'export',
        status: 'succeeded',
        summary: { train: 40, validation: 5, manifestKey: 'a/b' },
      }),
    ).toBe('✓ export        2.5 s  train=40 validation=5');
    expect(describeStage({ ...base, name: 'shadow', status: 'skipped', summary: null, reason: 'no incumbent' })).toBe(
      '- shadow     skipped: no incumbent',
    );
    expect(describeStage({ ...base, name: 'train', status: 'failed', summary: null, reason: 'out of memory' })).toBe(
      '✗ train      failed: out of memory',
    );
  });
});
