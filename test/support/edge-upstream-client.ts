import type { UpstreamClient } from "../../services/edge/upstream.js";

/**
 * The transport of the edges tests start: UMW_EDGE_UPSTREAM_CLIENT as the edge reads it
 * (`lean` unless set to `grpc-js`), so a suite runs with either:
 *
 *   UMW_EDGE_UPSTREAM_CLIENT=grpc-js node --import tsx --test test/edge/*.test.ts
 */
export function testUpstreamClient(): UpstreamClient {
  return process.env.UMW_EDGE_UPSTREAM_CLIENT === "grpc-js" ? "grpc-js" : "lean";
}
