import type { IncomingHttpHeaders } from "node:http";

const CONNECT_TIMEOUT = "connect-timeout-ms";
const GRPC_TIMEOUT = "grpc-timeout";
const GRPC_UNITS_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * Clamps the caller's deadline headers (Connect `Connect-Timeout-Ms`, gRPC / gRPC-web
 * `grpc-timeout`) to `maxMs`, in place, before connect-node reads them. Without it a timeout of
 * 2^31 ms or more (or hours of grpc-timeout) overflows Node's timer, which then fires at once and
 * cancels the call. Malformed values are left for the protocol handler to reject.
 */
export function clampTimeoutHeaders(headers: IncomingHttpHeaders, maxMs: number): void {
  const connect = headers[CONNECT_TIMEOUT];
  if (typeof connect === "string" && /^\d{1,10}$/.test(connect) && Number(connect) > maxMs) headers[CONNECT_TIMEOUT] = String(maxMs);
  const grpc = headers[GRPC_TIMEOUT];
  if (typeof grpc === "string") {
    const match = /^(\d{1,8})([HMSmun])$/.exec(grpc);
    if (match && Number(match[1]) * GRPC_UNITS_MS[match[2]!]! > maxMs) headers[GRPC_TIMEOUT] = maxMs <= 99_999_999 ? `${maxMs}m` : `${Math.floor(maxMs / 1_000)}S`;
  }
}
