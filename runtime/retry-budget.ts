/** How many retries a retry budget allows. */
export interface RetryBudgetOptions {
  /** Retries allowed as a share of the calls in the window (0.2: one retry per five calls). */
  readonly ratio: number;
  /** Retries allowed in any window however few calls there were (so a quiet service still gets some). */
  readonly minRetries: number;
  /** Length of the sliding window, in milliseconds. */
  readonly windowMs: number;
}

const SLOTS = 10;

/**
 * A retry budget (as gRPC's retry throttling and Finagle's): retries stay below `ratio` of the calls
 * made over the last window plus `minRetries`, so that when an upstream fails every call, retries add
 * at most that share of load instead of multiplying it. The window slides in ten slots; counting a
 * call or a retry allocates nothing.
 */
export class RetryBudget {
  private readonly calls = new Float64Array(SLOTS);
  private readonly retries = new Float64Array(SLOTS);
  private readonly slotMs: number;
  private slot = 0;
  private slotStart = 0;

  constructor(
    private readonly options: RetryBudgetOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.slotMs = Math.max(1, options.windowMs / SLOTS);
  }

  /** A first attempt was made. */
  recordCall(): void {
    this.advance();
    this.calls[this.slot]!++;
  }

  /** Whether one more retry fits the budget; if it does, it is counted as made. */
  tryRetry(): boolean {
    this.advance();
    let calls = 0;
    let retries = 0;
    for (let i = 0; i < SLOTS; i++) {
      calls += this.calls[i]!;
      retries += this.retries[i]!;
    }
    if (retries >= Math.floor(this.options.minRetries + this.options.ratio * calls)) return false;
    this.retries[this.slot]!++;
    return true;
  }

  /** Moves to the current slot, clearing the slots that fell out of the window. */
  private advance(): void {
    const now = this.now();
    if (now - this.slotStart < this.slotMs) return;
    const steps = Math.min(SLOTS, Math.floor((now - this.slotStart) / this.slotMs));
    for (let i = 0; i < steps; i++) {
      this.slot = (this.slot + 1) % SLOTS;
      this.calls[this.slot] = 0;
      this.retries[this.slot] = 0;
    }
    this.slotStart = steps === SLOTS ? now : this.slotStart + steps * this.slotMs;
  }
}
