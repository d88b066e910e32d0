import type { IncomingHttpHeaders } from "node:http";
import { Metadata } from "@grpc/grpc-js";
import { Code, RpcError } from "../../runtime/errors.js";
import { principalHeaders, type Principal } from "../../runtime/principal.js";

export const REQUEST_ID = "x-request-id";

/** Request headers the edge passes to the internal service as gRPC metadata. */
export const DEFAULT_FORWARDED_HEADERS: readonly string[] = [
  // Not `authorization`: the edge verifies the token and sends the principal (principalHeaders) instead.
  "idempotency-key",
  "if-match",
  "if-none-match",
  "traceparent",
  "tracestate",
];

/** `x-umw-*`: metadata only the edge sets (the principal); a client's are never forwarded. */
export function isPrincipalHeader(name: string): boolean {
  return name.toLowerCase().startsWith("x-umw-");
}

/** Adds the principal's metadata (runtime/principal.ts) to an upstream call. */
export function setPrincipal(metadata: Metadata, principal: Principal | undefined): void {
  if (principal === undefined) return;
  let headers = principalMetadata.get(principal);
  if (!headers) principalMetadata.set(principal, (headers = Object.entries(principalHeaders(principal))));
  for (const [name, value] of headers) metadata.set(name, value);
}

/** The metadata entries of a principal, made once per principal object (the verified-token cache hands out one per token). */
const principalMetadata = new WeakMap<Principal, [string, string][]>();

/** Upstream response metadata the edge passes on to the client (REST renames umw-cache-status). */
export const DEFAULT_PASSTHROUGH_HEADERS: readonly string[] = ["umw-cache-status", "location", "retry-after", "idempotent-replayed", "idempotency-key-expires"];

export { requestIdOf } from "../../runtime/interceptor-request-id.js";

/** Metadata for the upstream call from a node:http request. */
export function metadataFromIncoming(headers: IncomingHttpHeaders, forwarded: readonly string[], requestId: string): Metadata {
  const metadata = new Metadata();
  metadata.set(REQUEST_ID, requestId);
  for (const name of forwarded) {
    const value = headers[name];
    if (value === undefined) continue;
    setHeader(metadata, name, Array.isArray(value) ? value.join(", ") : value);
  }
  return metadata;
}

/** Metadata for the upstream call from a Fetch API Headers object (Connect handlers). */
export function metadataFromHeaders(headers: Headers, forwarded: readonly string[], requestId: string): Metadata {
  const metadata = new Metadata();
  metadata.set(REQUEST_ID, requestId);
  for (const name of forwarded) {
    const value = headers.get(name);
    if (value !== null) setHeader(metadata, name, value);
  }
  return metadata;
}

/** gRPC metadata values are printable ASCII; a header outside that is the caller's mistake. */
function setHeader(metadata: Metadata, name: string, value: string): void {
  try {
    metadata.set(name, value);
  } catch {
    throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_HEADER", `header ${name} has characters that cannot be forwarded`, { header: name });
  }
}
