import { HttpError } from './errors';

/**
 * Fair use of the inference endpoints, per API process: each key has a request rate (a token bucket: `keyRps`
 * sustained, `keyBurst` at once) and a number of calls in flight; each model a number of calls in flight to its
 * servers, beyond which calls wait in line (at most `modelQueue` of them, each at most `modelWaitMs`). A caller
 * over its share gets a 429 with Retry-After at once, so one app cannot starve another and memory stays bounded
 * whatever arrives. In memory: with several API processes each enforces its own share.
 */
export interface FairUseLimits {
  keyRps: number;
  keyBurst: number;
  keyConcurrency: number;
  modelConcurrency: number;
  modelQueue: number;
  modelWaitMs: number;
}

export const DEFAULT_LIMITS: FairUseLimits = {
  keyRps: 50,
  keyBurst: 100,
  keyConcurrency: 32,
  modelConcurrency: 64,
  modelQueue: 256,
  modelWaitMs: 10_000,
};

interface Bucket {
  tokens: number;
  at: number;
  inFlight: number;
}

interface Lane {
  inFlight: number;
  waiting: { grant: () => void; timer: NodeJS.Timeout }[];
}

export type Release = () => void;

export class FairUse {
  private readonly keys = new Map<string, Bucket>();
  private readonly models = new Map<string, Lane>();

  constructor(
    readonly limits: FairUseLimits = DEFAULT_LIMITS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Admits one call of `key` or throws a 429 naming the limit; the release ends the call's share. */
  admitKey(key: string): Release {
    const t = this.now();
    const b = this.keys.get(key) ?? { tokens: this.limits.keyBurst, at: t, inFlight: 0 };
    b.tokens = Math.min(this.limits.keyBurst, b.tokens + ((t - b.at) / 1000) * this.limits.keyRps);
    b.at = t;
    this.keys.set(key, b);
    if (b.inFlight >= this.limits.keyConcurrency) {
      throw new HttpError(
        429,
        'rate_limited',
        `this key has ${b.inFlight} calls in flight, the most it may have (${this.limits.keyConcurrency}); retry when one ends`,
        undefined,
        1,
      );
    }
    if (b.tokens < 1) {
      const waitS = Math.max(1, Math.ceil((1 - b.tokens) / this.limits.keyRps));
      throw new HttpError(
        429,
        'rate_limited',
        `this key is over its rate of ${this.limits.keyRps} calls per second; retry in ${waitS} s`,
        undefined,
        waitS,
      );
    }
    b.tokens -= 1;
    b.inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      b.inFlight--;
      this.forgetIdleKeys();
    };
  }

  /**
   * A place among the calls in flight to `model`'s servers: at once when there is room, else after the calls
   * before it in line, or a 429 when the line is full or the wait would pass `modelWaitMs`.
   */
  async admitModel(model: string, signal: AbortSignal): Promise<Release> {
    const lane = this.models.get(model) ?? { inFlight: 0, waiting: [] };
    this.models.set(model, lane);
    const release = () => {
      lane.inFlight--;
      const next = lane.waiting.shift();
      if (next) {
        clearTimeout(next.timer);
        lane.inFlight++;
        next.grant();
      } else if (lane.inFlight === 0) {
        this.models.delete(model);
      }
    };
    const once = (): Release => {
      let done = false;
      return () => {
        if (!done) {
          done = true;
          release();
        }
      };
    };
    if (lane.inFlight < this.limits.modelConcurrency) {
      lane.inFlight++;
      return once();
    }
    if (lane.waiting.length >= this.limits.modelQueue) {
      throw busy(model, `${lane.waiting.length} calls are already waiting`);
    }
    return new Promise<Release>((resolve, reject) => {
      const entry = {
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(once());
        },
        timer: setTimeout(() => {
          remove();
          reject(busy(model, `no room within ${this.limits.modelWaitMs} ms`));
        }, this.limits.modelWaitMs),
      };
      const remove = () => {
        const i = lane.waiting.indexOf(entry);
        if (i >= 0) lane.waiting.splice(i, 1);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        clearTimeout(entry.timer);
        remove();
        reject(signal.reason ?? new Error('aborted'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      lane.waiting.push(entry);
    });
  }

  /** Keys with nothing in flight and a full bucket hold no state worth keeping. */
  private forgetIdleKeys() {
    if (this.keys.size < 10_000) return;
    const t = this.now();
    for (const [k, b] of this.keys) {
      const full = b.tokens + ((t - b.at) / 1000) * this.limits.keyRps >= this.limits.keyBurst;
      if (b.inFlight === 0 && full) this.keys.delete(k);
    }
  }
}

function busy(model: string, why: string): HttpError {
  return new HttpError(
    429,
    'model_busy',
    `model ${model} is at its limit of calls in flight (${why}); retry shortly`,
    undefined,
    1,
  );
}
