import { ExponentialBackoff, handleWhen, retry } from "cockatiel";

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
  /** Called before each wait, e.g. to log or to mark something not ready. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  readonly signal?: AbortSignal;
}

/**
 * The one retry helper: runs `fn` until it succeeds, waiting between attempts with cockatiel's
 * exponential backoff (decorrelated jitter), and rethrows the last failure once it is not worth
 * another try (the predicate, the attempt limit or the deadline).
 */
export function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const worthRetrying = (error: unknown) =>
    (options.shouldRetry?.(error) ?? true) && (options.deadline === undefined || Date.now() < options.deadline);
  const policy = retry(handleWhen(worthRetrying), {
    maxAttempts: options.maxAttempts === undefined ? Number.POSITIVE_INFINITY : options.maxAttempts - 1,
    backoff: new ExponentialBackoff({ initialDelay: options.initialDelayMs ?? 100, maxDelay: options.maxDelayMs ?? 2_000 }),
  });
  if (options.onRetry) {
    const onRetry = options.onRetry;
    policy.onRetry((event) => onRetry("error" in event ? event.error : undefined, event.attempt, event.delay));
  }
  return policy.execute(({ attempt }) => fn(attempt), options.signal);
}
