import type { DescMethod } from "@bufbuild/protobuf";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import type { ClientInterceptor } from "../../runtime/interceptor.js";
import type { Logger } from "../../runtime/logger.js";
import { clientCircuitBreaker } from "../../runtime/interceptor-circuit-breaker.js";
import { clientLoadShedding } from "../../runtime/interceptor-load-shedding.js";
import { clientRetry } from "../../runtime/interceptor-retry.js";
import { RetryBudget } from "../../runtime/retry-budget.js";

/** How the edge treats each upstream (UMW_EDGE_RETRY_*, UMW_EDGE_BREAKER_*, UMW_EDGE_MAX_IN_FLIGHT). */
export interface UpstreamResilience {
  /** Attempts in all of an idempotent call (reads) that fails UNAVAILABLE; 1 = no retries. */
  readonly retryAttempts: number;
  readonly retryInitialDelayMs: number;
  readonly retryMaxDelayMs: number;
  /** Retries per upstream at most this share of its calls over the window, plus `retryBudgetMin`. */
  readonly retryBudgetRatio: number;
  readonly retryBudgetMin: number;
  readonly retryBudgetWindowMs: number;
  /** Consecutive UNAVAILABLE calls that open the upstream's circuit breaker. */
  readonly breakerFailures: number;
  readonly breakerHalfOpenAfterMs: number;
  /** Unary calls in flight per upstream beyond which the edge answers 503 EDGE_OVERLOADED. */
  readonly maxInFlight: number;
}

export const DEFAULT_UPSTREAM_RESILIENCE: UpstreamResilience = {
  retryAttempts: 3,
  retryInitialDelayMs: 25,
  retryMaxDelayMs: 250,
  retryBudgetRatio: 0.2,
  retryBudgetMin: 10,
  retryBudgetWindowMs: 10_000,
  breakerFailures: 5,
  breakerHalfOpenAfterMs: 5_000,
  maxInFlight: 1_000,
};

/**
 * The methods the edge may call again: reads. Writes (CreateEntity, UpdateEntity, PatchEntity,
 * DeleteEntity) are not retried by the edge even though they carry an Idempotency-Key: the key is
 * the client's, and so is the decision to repeat a write whose outcome it does not know (a repeat
 * after the first attempt was accepted would answer the stored receipt, but one racing it gets
 * IDEMPOTENCY_KEY_IN_USE; the client, which sees both, handles that). Streams are never retried.
 */
export const IDEMPOTENT_METHODS: ReadonlySet<DescMethod> = new Set<DescMethod>([
  QueryService.method.getEntity,
  QueryService.method.batchGetEntities,
  QueryService.method.listEntities,
  CommandService.method.getCommand,
]);

const isIdempotent = (method: DescMethod) => IDEMPOTENT_METHODS.has(method);

/**
 * The interceptors of one upstream's mesh client, outermost first: the in-flight bound (sheds at
 * once, so nothing queues), the circuit breaker (a refusal without calling), then retries of
 * idempotent calls inside it (the breaker counts a call once, after its retries).
 */
export function upstreamInterceptors(service: string, settings: UpstreamResilience, log?: Logger): ClientInterceptor[] {
  return [
    clientLoadShedding({ service, maxInFlight: settings.maxInFlight }),
    clientCircuitBreaker({
      service,
      consecutiveFailures: settings.breakerFailures,
      halfOpenAfterMs: settings.breakerHalfOpenAfterMs,
      onStateChange: (state) =>
        state === "open"
          ? log?.warn({ service, failures: settings.breakerFailures, halfOpenAfterMs: settings.breakerHalfOpenAfterMs }, "upstream circuit opened: calls refused until it recovers")
          : log?.info({ service }, "upstream circuit closed"),
    }),
    clientRetry({
      idempotent: isIdempotent,
      maxAttempts: settings.retryAttempts,
      initialDelayMs: settings.retryInitialDelayMs,
      maxDelayMs: settings.retryMaxDelayMs,
      budget: new RetryBudget({ ratio: settings.retryBudgetRatio, minRetries: settings.retryBudgetMin, windowMs: settings.retryBudgetWindowMs }),
    }),
  ];
}
