import { circuitBreaker, ConsecutiveBreaker, handleWhen, isBrokenCircuitError } from "cockatiel";
import { Code, RpcError } from "./errors.js";
import type { ClientInterceptor } from "./interceptor.js";
import { isUnavailable } from "./interceptor-retry.js";

export interface ClientCircuitBreakerOptions {
  /** Named in the refusal's ErrorInfo metadata. */
  readonly service: string;
  /** Consecutive UNAVAILABLE calls (each after its retries) that open the circuit. */
  readonly consecutiveFailures: number;
  /** How long the circuit stays open before one call probes the upstream (half-open). */
  readonly halfOpenAfterMs: number;
  /** Told when the circuit opens (after the failures) and when it closes again (a probe succeeded). */
  readonly onStateChange?: (state: "open" | "closed") => void;
}

/**
 * Client: one cockatiel circuit breaker for all unary calls to an upstream (place one instance per
 * upstream). After `consecutiveFailures` calls in a row fail UNAVAILABLE it opens, and calls are
 * refused at once with UNAVAILABLE `UPSTREAM_CIRCUIT_OPEN` and a Retry-After of the time left; after
 * `halfOpenAfterMs` the next call probes the upstream (others wait for its outcome) and its
 * success closes the circuit, its failure opens it again. Other failures (a caller's mistake, a
 * deadline, a cancel) neither count nor reset. Streams pass untouched.
 */
export function clientCircuitBreaker(options: ClientCircuitBreakerOptions): ClientInterceptor {
  const breaker = circuitBreaker(handleWhen(isUnavailable), {
    halfOpenAfter: options.halfOpenAfterMs,
    breaker: new ConsecutiveBreaker(options.consecutiveFailures),
  });
  let openedAt = 0;
  breaker.onBreak(() => {
    openedAt = Date.now();
    options.onStateChange?.("open");
  });
  breaker.onReset(() => options.onStateChange?.("closed"));
  const refusal = () => {
    const seconds = Math.max(1, Math.ceil((openedAt + options.halfOpenAfterMs - Date.now()) / 1000));
    return new RpcError(Code.UNAVAILABLE, "UPSTREAM_CIRCUIT_OPEN", `${options.service} is failing; the edge does not call it for now`, { service: options.service }, {
      "retry-after": String(seconds),
    });
  };
  return (next) => async (req) => {
    if (req.method.methodKind !== "unary") return next(req);
    try {
      return await breaker.execute(() => next(req));
    } catch (error) {
      throw isBrokenCircuitError(error) ? refusal() : error;
    }
  };
}
