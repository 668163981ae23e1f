// The circuit breaker in front of a model's local versions: after `failures` consecutive local failures the model's
// traffic goes to its incumbent for `cooldownMs`; then one call probes the local version, and its outcome closes
// the breaker or opens it for another cool-down. One per model and API process (state in memory: a restarted API
// starts closed and finds out again within `failures` calls).

export type BreakerState = 'closed' | 'open' | 'probing';

export class Breaker {
  private consecutive = 0;
  private openUntil = 0;
  private probing = false;

  constructor(
    private readonly failures: number,
    private readonly cooldownMs: number,
  ) {}

  /** Whether this call may try the local version now (in half-open, only the one probe may). */
  allowLocal(now: number): boolean {
    if (this.openUntil === 0) return true;
    if (now < this.openUntil || this.probing) return false;
    this.probing = true;
    return true;
  }

  succeeded(): void {
    this.consecutive = 0;
    this.openUntil = 0;
    this.probing = false;
  }

  failed(now: number): void {
    this.consecutive++;
    if (this.probing || this.consecutive >= this.failures) {
      this.openUntil = now + this.cooldownMs;
      this.probing = false;
    }
  }

  state(now: number): BreakerState {
    if (this.openUntil === 0) return 'closed';
    return this.probing ? 'probing' : now < this.openUntil ? 'open' : 'probing';
  }
}

/** The breakers of every model an API process serves, made with the model's settings of the moment. */
export class Breakers {
  private readonly byModel = new Map<string, { key: string; breaker: Breaker }>();

  for(model: string, failures: number, cooldownMs: number): Breaker {
    const key = `${failures}/${cooldownMs}`;
    const hit = this.byModel.get(model);
    if (hit && hit.key === key) return hit.breaker;
    const breaker = new Breaker(failures, cooldownMs);
    this.byModel.set(model, { key, breaker });
    return breaker;
  }
}
