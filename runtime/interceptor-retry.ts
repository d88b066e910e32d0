import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "./errors.js";
import type { ClientInterceptor, ClientRequest } from "./interceptor.js";
import type { RetryBudget } from "./retry-budget.js";
import { withRetry } from "./retry.js";

export interface ClientRetryOptions {
  /** Whether calls of a method may be repeated (reads); others are never retried. Asked per call: keep it a Set lookup. */
  readonly idempotent: (method: DescMethod) => boolean;
  /** Attempts in all, the first included; 1 = no retries. */
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Shared by every method of the upstream: retries are capped as a share of its calls. */
  readonly budget: RetryBudget;
}

/**
 * Client: a unary call of an idempotent method that fails UNAVAILABLE before any response header
 * arrived is made again, after a jittered exponential backoff (runtime/retry.ts), while the budget
 * allows and the next attempt can start before the call's deadline. Everything else (writes,
 * streams, other codes, a failure after the response started) fails as it came. A call that
 * succeeds the first time costs a counter and the request copy that watches for headers.
 */
export function clientRetry(options: ClientRetryOptions): ClientInterceptor {
  const { budget } = options;
  return (next) => async (req) => {
    if (options.maxAttempts <= 1 || req.method.methodKind !== "unary" || !options.idempotent(req.method)) return next(req);
    budget.recordCall();
    let responseStarted = false;
    const { onHeader } = req;
    const attempt: ClientRequest = {
      ...req,
      onHeader: (header) => {
        responseStarted = true;
        onHeader?.(header);
      },
    };
    try {
      return await next(attempt);
    } catch (first) {
      if (responseStarted || !isUnavailable(first)) throw first;
      // The first attempt has failed already: withRetry starts from its failure (attempt 1).
      return withRetry((n) => (n === 1 ? Promise.reject(first) : next(attempt)), {
        maxAttempts: options.maxAttempts,
        initialDelayMs: options.initialDelayMs,
        maxDelayMs: options.maxDelayMs,
        deadline: Number.isFinite(req.deadline) ? req.deadline : undefined,
        signal: req.signal,
        shouldRetry: (error) => !responseStarted && isUnavailable(error) && budget.tryRetry(),
      });
    }
  };
}

/** UNAVAILABLE, from the wire (grpc-js error) or as an RpcError. */
export function isUnavailable(error: unknown): boolean {
  return (error as { code?: unknown } | undefined)?.code === Code.UNAVAILABLE;
}
