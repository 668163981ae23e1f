import { describe, expect, it } from 'vitest';
import { HttpError } from '../../src/api/errors';
import { FairUse, type FairUseLimits } from '../../src/api/fair-use';

const LIMITS: FairUseLimits = {
  keyRps: 10,
  keyBurst: 3,
  keyConcurrency: 2,
  modelConcurrency: 1,
  modelQueue: 1,
  modelWaitMs: 50,
};

function refused(fn: () => unknown): HttpError {
  try {
    fn();
  } catch (err) {
    if (err instanceof HttpError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('FairUse per key', () => {
  it('lets a burst through, then refuses with 429 and the seconds until the bucket has a token again', () => {
    // Arrange
    let now = 0;
    const fair = new FairUse({ ...LIMITS, keyConcurrency: 100 }, () => now);

    // Act
    for (let i = 0; i < 3; i++) fair.admitKey('a')();
    const over = refused(() => fair.admitKey('a'));
    now += 100; // one token at 10 per second
    const again = fair.admitKey('a');

    // Assert
    expect(over).toMatchObject({ status: 429, code: 'rate_limited', retryAfterS: 1 });
    expect(typeof again).toBe('function');
  });

  it("counts each key on its own: one key's flood leaves another's share whole", () => {
    const fair = new FairUse(LIMITS, () => 0);
    for (let i = 0; i < 3; i++) fair.admitKey('flood')();
    expect(refused(() => fair.admitKey('flood')).status).toBe(429);
    expect(() => fair.admitKey('quiet')).not.toThrow();
  });

  it('refuses a call beyond the calls in flight until one ends; a release counts once', () => {
    const fair = new FairUse({ ...LIMITS, keyBurst: 100 }, () => 0);
    const first = fair.admitKey('a');
    fair.admitKey('a');
    expect(refused(() => fair.admitKey('a'))).toMatchObject({ status: 429, retryAfterS: 1 });
    first();
    first();
    fair.admitKey('a');
    expect(refused(() => fair.admitKey('a')).status).toBe(429);
  });
});

describe('FairUse per model', () => {
  it('queues a call while the model is at its limit and lets it in when a call ends', async () => {
    const fair = new FairUse(LIMITS);
    const signal = new AbortController().signal;
    const release = await fair.admitModel('m', signal);
    const waiting = fair.admitModel('m', signal);
    release();
    await expect(waiting).resolves.toBeTypeOf('function');
  });

  it('refuses when the line is full, and when the wait runs out', async () => {
    const fair = new FairUse(LIMITS);
    const signal = new AbortController().signal;
    await fair.admitModel('m', signal);
    const waiting = fair.admitModel('m', signal);
    await expect(fair.admitModel('m', signal)).rejects.toMatchObject({ status: 429, code: 'model_busy' });
    await expect(waiting).rejects.toMatchObject({ status: 429, code: 'model_busy' });
    // Another model is not held up by this one.
    await expect(fair.admitModel('other', signal)).resolves.toBeTypeOf('function');
  });

  it('takes a caller that went away out of the line', async () => {
    const fair = new FairUse({ ...LIMITS, modelWaitMs: 60_000 });
    const release = await fair.admitModel('m', new AbortController().signal);
    const gone = new AbortController();
    const waiting = fair.admitModel('m', gone.signal);
    gone.abort(new Error('gone'));
    await expect(waiting).rejects.toThrow('gone');
    release();
    // The place is free again: the next caller gets in at once.
    await expect(fair.admitModel('m', new AbortController().signal)).resolves.toBeTypeOf('function');
  });
});
