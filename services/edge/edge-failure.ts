import { create, fromBinary, toJson, type JsonObject, type Registry } from "@bufbuild/protobuf";
import type { Metadata, ServiceError } from "@grpc/grpc-js";
import { StatusSchema, type Status } from "../../gen/google/rpc/status_pb.js";
import { wireError } from "../../runtime/client.js";
import { Code, RpcError } from "../../runtime/errors.js";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";
/** Upstream metadata naming the HTTP status the service means (see httpStatusAsked). */
const HTTP_STATUS_KEY = "x-http-status";

/**
 * A failure the edge answers with: a google.rpc.Status (code, message, details such as ErrorInfo),
 * the headers that travel with it (upstream metadata to pass on, or HTTP headers such as Allow), and
 * for failures of HTTP itself (405, 413, 415) the HTTP status that the gRPC code cannot express.
 */
export class EdgeFailure extends Error {
  override readonly name = "EdgeFailure";
  constructor(
    readonly status: Status,
    readonly headers: Readonly<Record<string, string>> = {},
    readonly httpStatus?: number,
  ) {
    super(status.message);
  }

  get code(): number {
    return this.status.code;
  }

  /** A failure of the edge's own, with an ErrorInfo reason in the umw domain. */
  static of(
    code: Code,
    reason: string,
    message: string,
    metadata: Record<string, string> = {},
    options: { httpStatus?: number; headers?: Record<string, string> } = {},
  ): EdgeFailure {
    return new EdgeFailure(new RpcError(code, reason, message, metadata).toStatus(), options.headers, options.httpStatus);
  }

  /**
   * Reads a grpc-js client error. An upstream that answered keeps its Status (all details) and the
   * selected trailers; a failure of the channel itself (no Status from the service) gets an edge
   * reason and a message that does not leak internal addresses.
   */
  static fromUpstream(error: Pick<ServiceError, "code" | "details" | "metadata">, service: string, passthrough: readonly string[]): EdgeFailure {
    const headers = pickHeaders(error.metadata, passthrough);
    const raw = error.metadata?.get(STATUS_DETAILS_KEY)[0];
    if (raw instanceof Buffer) {
      try {
        const status = fromBinary(StatusSchema, raw);
        status.code = error.code;
        return new EdgeFailure(status, headers, httpStatusAsked(error.code, error.metadata));
      } catch {
        // An unreadable Status: fall through to the code and message.
      }
    }
    const code = (error.code ?? Code.UNKNOWN) as Code;
    switch (code) {
      case Code.UNAVAILABLE:
        return new EdgeFailure(new RpcError(code, "UPSTREAM_UNAVAILABLE", `${service} is unavailable`, { service }).toStatus(), headers);
      case Code.DEADLINE_EXCEEDED:
        return new EdgeFailure(new RpcError(code, "UPSTREAM_TIMEOUT", `${service} did not answer in time`, { service }).toStatus(), headers);
      case Code.CANCELLED:
        return new EdgeFailure(new RpcError(code, "CANCELLED", "the call was cancelled", { service }).toStatus(), headers);
      default:
        return new EdgeFailure(new RpcError(code, Code[code] ?? "UNKNOWN", error.details || "upstream failure", { service }).toStatus(), headers);
    }
  }
}

/** A failed upstream call (mesh client): the upstream's Status whole when it came over the wire. */
export function upstreamFailure(error: unknown, service: string, passthrough: readonly string[]): EdgeFailure {
  const wire = wireError(error);
  return wire ? EdgeFailure.fromUpstream(wire, service, passthrough) : toEdgeFailure(error);
}

/**
 * The HTTP status a failing service asks for in `x-http-status`, honoured narrowly: only with
 * FAILED_PRECONDITION, whose HTTP meaning depends on which precondition failed (422 for an
 * idempotency key reused with another request, 412 for If-Match / expected_version), and only
 * for 409, 412, 422 and 428. Any other code keeps the standard mapping (http-status.ts).
 */
function httpStatusAsked(code: number, metadata: Metadata | undefined): number | undefined {
  if (code !== Code.FAILED_PRECONDITION) return undefined;
  const asked = Number(metadata?.get(HTTP_STATUS_KEY)[0]);
  return PRECONDITION_HTTP_STATUSES.has(asked) ? asked : undefined;
}

const PRECONDITION_HTTP_STATUSES = new Set([409, 412, 422, 428]);

/** Anything else thrown on the way is a bug: the caller learns only that. */
export function toEdgeFailure(error: unknown): EdgeFailure {
  if (error instanceof EdgeFailure) return error;
  if (error instanceof RpcError) return new EdgeFailure(error.toStatus(), error.headers);
  return EdgeFailure.of(Code.INTERNAL, "INTERNAL", "internal error");
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
