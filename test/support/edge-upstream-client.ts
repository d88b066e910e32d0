import type { UpstreamClient } from "../../services/edge/upstream.js";

/**
 * The transport of the edges tests start: UMW_EDGE_UPSTREAM_CLIENT as the edge reads it
 * (`grpc-js` unless set to `lean`), so a suite runs with either:
 *
 *   UMW_EDGE_UPSTREAM_CLIENT=lean node --import tsx --test test/edge/*.test.ts
 */
export function testUpstreamClient(): UpstreamClient {
  return process.env.UMW_EDGE_UPSTREAM_CLIENT === "lean" ? "lean" : "grpc-js";
}
