import { create, toJson, type JsonObject, type Registry } from "@bufbuild/protobuf";
import type { Metadata } from "@grpc/grpc-js";
import { StatusSchema, type Status } from "../../gen/google/rpc/status_pb.js";
import { wireError } from "../../runtime/client.js";
import { Code, RpcError, statusOfServiceError } from "../../runtime/errors.js";

/**
 * A failed upstream call (mesh client), as the edge answers it. An upstream that answered keeps
 * its Status whole (all details, its code the call's) and the selected trailers; a failure of the
 * channel itself (no Status from the service) gets an edge reason and a message that does not
 * leak internal addresses. How the failure becomes an HTTP status: http-status.ts.
 */
export function upstreamFailure(error: unknown, service: string, passthrough: readonly string[]): RpcError {
  const wire = wireError(error);
  if (!wire) return edgeFailureOf(error);
  const headers = pickHeaders(wire.metadata, passthrough);
  const status = statusOfServiceError(wire);
  if (status) return RpcError.fromStatus(status, headers);
  const code = (wire.code ?? Code.UNKNOWN) as Code;
  switch (code) {
    case Code.UNAVAILABLE:
      return new RpcError(code, "UPSTREAM_UNAVAILABLE", `${service} is unavailable`, { service }, headers);
    case Code.DEADLINE_EXCEEDED:
      return new RpcError(code, "UPSTREAM_TIMEOUT", `${service} did not answer in time`, { service }, headers);
    case Code.CANCELLED:
      return new RpcError(code, "CANCELLED", "the call was cancelled", { service }, headers);
    default:
      return RpcError.fromWire(code, Code[code] ?? "UNKNOWN", wire.details || "upstream failure", { service }, headers);
  }
}

/** What the edge answers for anything thrown on the way: an RpcError as it is, anything else is a bug and the caller learns only that. */
export function edgeFailureOf(error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  return new RpcError(Code.INTERNAL, "INTERNAL", "internal error");
}

export function pickHeaders(metadata: Metadata | undefined, names: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  if (!metadata) return headers;
  for (const name of names) {
    const values = metadata.get(name);
    if (values.length > 0) headers[name] = values.map(String).join(", ");
  }
  return headers;
}

/**
 * google.rpc.Status as proto3 JSON: `{"code":5,"message":"...","details":[{"@type":...}]}`. Details
 * whose type the registry does not know are dropped rather than failing the answer.
 */
export function statusJson(status: Status, registry: Registry): string {
  let json: JsonObject;
  try {
    json = toJson(StatusSchema, status, { registry }) as JsonObject;
  } catch {
    const known = status.details.filter((detail) => registry.getMessage(detail.typeUrl.slice(detail.typeUrl.lastIndexOf("/") + 1)));
    json = toJson(StatusSchema, create(StatusSchema, { code: status.code, message: status.message, details: known }), { registry }) as JsonObject;
  }
  // "@type" first, as grpc-gateway and Envoy write it: easier to read, same meaning.
  if (Array.isArray(json.details)) json.details = json.details.map((detail) => ({ "@type": (detail as JsonObject)["@type"] ?? null, ...(detail as JsonObject) }));
  return JSON.stringify(json);
}
