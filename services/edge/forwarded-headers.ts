import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { Metadata } from "@grpc/grpc-js";
import { Code, RpcError } from "../../runtime/errors.js";

export const REQUEST_ID = "x-request-id";

/** Request headers the edge passes to the internal service as gRPC metadata. */
export const DEFAULT_FORWARDED_HEADERS: readonly string[] = [
  "authorization",
  "idempotency-key",
  "if-match",
  "if-none-match",
  "traceparent",
  "tracestate",
];

/** Upstream response metadata the edge passes on to the client (REST renames umw-cache-status). */
export const DEFAULT_PASSTHROUGH_HEADERS: readonly string[] = ["umw-cache-status", "location", "retry-after", "idempotent-replayed", "idempotency-key-expires"];

const REQUEST_ID_SHAPE = /^[\x21-\x7e]{1,200}$/;

/** The caller's request id when it is a sane token, else a fresh one. */
export function requestIdOf(value: string | string[] | null | undefined): string {
  const candidate = Array.isArray(value) ? value[0] : value;
  return candidate && REQUEST_ID_SHAPE.test(candidate) ? candidate : randomUUID();
}

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
