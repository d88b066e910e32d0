import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DurationSchema, type Duration } from "@bufbuild/protobuf/wkt";
import type { CircuitBreakersSchema } from "../../gen/envoy/config/cluster/v3/circuit_breaker_pb.js";
import type { OutlierDetectionSchema } from "../../gen/envoy/config/cluster/v3/outlier_detection_pb.js";
import type { RetryPolicySchema, RouteSchema } from "../../gen/envoy/config/route/v3/route_components_pb.js";
import type { RoutedService } from "./routed-services.js";

/**
 * Envoy's counterpart of the Node edge's resilience toward upstreams (services/edge/upstream-resilience.ts):
 * route retry policies, and per mesh cluster circuit breakers with a retry budget and outlier detection.
 */

const ms = (value: number): Duration => create(DurationSchema, { seconds: BigInt(Math.floor(value / 1000)), nanos: (value % 1000) * 1_000_000 });

/** Retry conditions that repeat work only where repeating is harmless. */
const RETRY_ON: Record<RoutedService, string> = {
  // Reads: any failure before a response, and a service's own UNAVAILABLE (gRPC status 14).
  query: "unavailable,reset,connect-failure,refused-stream",
  // Writes and streams: only when the request never reached a service (nothing done, nothing to repeat).
  command: "connect-failure,refused-stream",
  realtime: "connect-failure,refused-stream",
  policy: "connect-failure,refused-stream",
};

/** Reads of CommandService, routed apart from its writes so that they get the read retry policy. */
const COMMAND_READS = ["/umw.v1.CommandService/GetCommand"];

/** The retry policy of a route to `service`: two retries, jittered exponential backoff (25-250 ms, as the Node edge). */
export function routeRetryPolicy(service: RoutedService): MessageInitShape<typeof RetryPolicySchema> {
  return { retryOn: RETRY_ON[service], numRetries: 2, retryBackOff: { baseInterval: ms(25), maxInterval: ms(250) } };
}

/** Routes for the reads of CommandService (REST GETs transcode to these paths), with the read retry policy; place them before its prefix route. */
export function commandReadRoutes(timeout: Duration): MessageInitShape<typeof RouteSchema>[] {
  return COMMAND_READS.map((path) => ({
    match: { pathSpecifier: { case: "path" as const, value: path } },
    action: { case: "route" as const, value: { clusterSpecifier: { case: "cluster" as const, value: "command" }, timeout, retryPolicy: routeRetryPolicy("query") } },
  }));
}

/** Requests in flight to a cluster at most (Envoy answers 503 beyond them, `x-envoy-overloaded`); realtime's are long-lived streams. */
const MAX_REQUESTS: Record<RoutedService, number> = { query: 1_000, command: 1_000, realtime: 65_536, policy: 4_096 };

/**
 * Circuit breakers of a mesh cluster: connections, pending requests and requests in flight, beyond
 * which Envoy sheds with 503 rather than queueing; and a retry budget (retries at most 20 % of the
 * requests in flight, at least 3 at a time) that replaces the max_retries breaker.
 */
export function clusterCircuitBreakers(service: RoutedService): MessageInitShape<typeof CircuitBreakersSchema> {
  return {
    thresholds: [
      {
        maxConnections: 1_024,
        maxPendingRequests: 1_024,
        maxRequests: MAX_REQUESTS[service],
        retryBudget: { budgetPercent: { value: 20 }, minRetryConcurrency: 3 },
        trackRemaining: true,
      },
    ],
  };
}

/**
 * Outlier detection of a mesh cluster: an instance failing 5 calls in a row (5xx, gRPC statuses as
 * their HTTP equivalents), or 2 in a row with a gateway failure (502/503/504: unreachable,
 * UNAVAILABLE, timeout), is taken out of the rotation for 10 s (longer each time), never more than
 * half of the instances.
 */
export function clusterOutlierDetection(): MessageInitShape<typeof OutlierDetectionSchema> {
  return {
    consecutive5xx: 5,
    consecutiveGatewayFailure: 2,
    enforcingConsecutiveGatewayFailure: 100,
    interval: ms(1_000),
    baseEjectionTime: ms(10_000),
    maxEjectionPercent: 50,
  };
}
