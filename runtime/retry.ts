import { setTimeout as sleep } from "node:timers/promises";
import { ExponentialBackoff, type IBackoff } from "cockatiel";

export interface RetryOptions {
  /** Delay before the second attempt (default 100 ms); later delays grow exponentially with jitter. */
  readonly initialDelayMs?: number;
  /** Upper bound of any one delay (default 2 s). */
  readonly maxDelayMs?: number;
  /** Attempts in all, the first included (default: no limit). */
  readonly maxAttempts?: number;
  /** Epoch ms past which a failure is final. */
  readonly deadline?: number;
  /** Whether a failure is worth another attempt (default: every failure). */
  readonly shouldRetry?: (error: unknown) => boolean;
  /** Called before each wait, e.g. to log or to mark something not ready. `attempt` counts the failures so far. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Stops retrying: an abort, also during a wait, rejects at once with the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * The one retry helper: runs `fn` (given the attempt number, 1 for the first) until it succeeds,
 * waiting between attempts as cockatiel's exponential backoff says (decorrelated jitter), and
 * rethrows the last failure once it is not worth another try (the predicate, the attempt limit, or
 * the deadline, also when the next wait would end past it). The wait is ours rather than cockatiel's
 * retry policy's, because that one cannot be cut short by the abort signal and would hold a
 * stopping process for up to `maxDelayMs`.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const { signal } = options;
  const maxAttempts = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  const factory = new ExponentialBackoff({ initialDelay: options.initialDelayMs ?? 100, maxDelay: options.maxDelayMs ?? 2_000 });
  let backoff: IBackoff<unknown> | undefined;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (error) {
      // The predicate last: it may count the retry against a budget (runtime/retry-budget.ts).
      const worthRetrying =
        attempt < maxAttempts && (options.deadline === undefined || Date.now() < options.deadline) && !signal?.aborted && (options.shouldRetry?.(error) ?? true);
      if (!worthRetrying) throw error;
      backoff = backoff ? backoff.next(undefined) : factory.next();
      // A wait that would end past the deadline cannot lead to an attempt in time: the failure is final now.
      if (options.deadline !== undefined && Date.now() + backoff.duration >= options.deadline) throw error;
      options.onRetry?.(error, attempt, backoff.duration);
      await sleep(backoff.duration, undefined, { signal }).catch(() => signal?.throwIfAborted());
    }
  }
}
