import { Code, RpcError } from "./errors.js";
import type { ClientInterceptor } from "./interceptor.js";

export interface ClientLoadSheddingOptions {
  /** Named in the refusal's ErrorInfo metadata. */
  readonly service: string;
  /** Unary calls in flight to the upstream at most; one more is refused, not queued. */
  readonly maxInFlight: number;
}

/**
 * Client: a bound on the unary calls in flight to one upstream (place one instance per upstream).
 * When the upstream is slow and the bound is reached, a further call fails at once with UNAVAILABLE
 * `EDGE_OVERLOADED` and `Retry-After: 1` instead of waiting in a queue that grows without bound.
 * Streams (long-lived by design, limited by the realtime service) are not counted.
 */
export function clientLoadShedding(options: ClientLoadSheddingOptions): ClientInterceptor {
  let inFlight = 0;
  return (next) => async (req) => {
    if (req.method.methodKind !== "unary") return next(req);
    if (inFlight >= options.maxInFlight) {
      throw new RpcError(Code.UNAVAILABLE, "EDGE_OVERLOADED", `too many calls in flight to ${options.service}; retry shortly`, { service: options.service }, { "retry-after": "1" });
    }
    inFlight++;
    try {
      return await next(req);
    } finally {
      inFlight--;
    }
  };
}
