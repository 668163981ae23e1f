/**
 * The caller's signal and a call's own deadline together: `signal` aborts when either does, `expired` tells which.
 * `end()` lifts the deadline (a stream's first chunk came in time) and must be called when the call is over.
 */
export class Deadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly startedAt = performance.now();
  expired = false;
  readonly signal: AbortSignal;

  constructor(
    caller: AbortSignal,
    readonly ms: number,
  ) {
    this.timer = setTimeout(() => {
      this.expired = true;
      this.controller.abort(new Error(`no answer within ${ms} ms`));
    }, ms);
    this.signal = AbortSignal.any([caller, this.controller.signal]);
  }

  /** Milliseconds left before the deadline. */
  remainingMs(): number {
    return Math.max(0, this.ms - (performance.now() - this.startedAt));
  }

  end() {
    clearTimeout(this.timer);
  }
}
