import { Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, type ErrorInfo } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema, type Status } from "../gen/google/rpc/status_pb.js";
import type { CodeOf, Reason } from "./reasons.js";

export { Code };

/** The domain every umw ErrorInfo carries. */
export const ERROR_DOMAIN = "umw.dev";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/**
 * The one failure type of umw, meant for the caller: a gRPC code, a readable message, and a
 * machine-readable reason (google.rpc.ErrorInfo, declared in runtime/reasons.ts) that survives every
 * protocol the edge speaks, plus the headers (trailers) that travel with it. A failure received
 * from a peer keeps the peer's Status whole (every detail), so that it is passed on as it came.
 * How the edges answer it over HTTP and Connect: services/edge/http-status.ts and
 * services/edge/connect-routes.ts.
 */
export class RpcError<R extends Reason = Reason> extends Error {
  override readonly name = "RpcError";
  readonly code: Code;
  #reason: string;
  /** The Status a peer sent (fromStatus): passed on whole. */
  #received: Status | undefined;
  constructor(
    code: CodeOf<R>,
    reason: R,
    message: string,
    readonly metadata: Record<string, string> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.code = code;
    this.#reason = reason;
  }

  /** A catalogued reason for umw's own failures; a received failure's reason is whatever the peer sent. */
  get reason(): string {
    return this.#reason;
  }

  toStatus(): Status {
    if (this.#received) return this.#received;
    const info = create(ErrorInfoSchema, { reason: this.reason, domain: ERROR_DOMAIN, metadata: this.metadata });
    return create(StatusSchema, { code: this.code, message: this.message, details: [anyPack(ErrorInfoSchema, info)] });
  }

  /** The error as grpc-js sends it: code, message, and the Status in `grpc-status-details-bin`. */
  toServiceError(): Partial<ServiceError> {
    const trailers = new Metadata();
    trailers.set(STATUS_DETAILS_KEY, Buffer.from(toBinary(StatusSchema, this.toStatus())));
    for (const [key, value] of Object.entries(this.headers)) trailers.set(key, value);
    return { code: this.code, details: this.message, metadata: trailers };
  }

  /**
   * A failure a peer reported in its own encoding (a fill announcement, a stored command status):
   * its reason is whatever the peer wrote, not checked against the catalogue.
   */
  static fromWire(code: number, reason: string, message: string, metadata: Record<string, string> = {}, headers: Record<string, string> = {}): RpcError {
    const error = new RpcError(Code.UNKNOWN, "UNKNOWN", message, metadata, headers);
    (error as { code: Code }).code = code;
    error.#reason = reason;
    return error;
  }

  /** A Status received from a peer, kept whole to be passed on as it came; the reason is its ErrorInfo's, else the code's name. */
  static fromStatus(status: Status, headers: Record<string, string> = {}): RpcError {
    const info = errorInfoOf(status);
    const error = RpcError.fromWire(status.code, info?.reason ?? Code[status.code] ?? "UNKNOWN", status.message, info?.metadata ?? {}, headers);
    error.#received = status;
    return error;
  }

  /** Reads a grpc-js client error back into an RpcError, keeping the Status and the service's own trailers. */
  static fromServiceError(error: ServiceError): RpcError {
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(error.metadata?.getMap() ?? {})) {
      if (typeof value === "string" && !key.startsWith("grpc-")) headers[key] = value;
    }
    const status = statusOfServiceError(error);
    if (!status) return RpcError.fromWire(error.code ?? Code.UNKNOWN, Code[error.code] ?? "UNKNOWN", error.details ?? error.message, {}, headers);
    const info = errorInfoOf(status);
    return RpcError.fromWire(status.code, info?.reason ?? Code[status.code] ?? "UNKNOWN", status.message, info?.metadata ?? {}, headers);
  }
}

/** The google.rpc.Status a grpc-js error carries in `grpc-status-details-bin` (its code the call's), if it carries a readable one. */
export function statusOfServiceError(error: Pick<ServiceError, "code" | "metadata">): Status | undefined {
  const raw = error.metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!(raw instanceof Buffer)) return undefined;
  try {
    const status = fromBinary(StatusSchema, raw);
    status.code = error.code;
    return status;
  } catch {
    return undefined;
  }
}

export function errorInfoOf(status: Status): ErrorInfo | undefined {
  for (const detail of status.details) {
    const info = anyUnpack(detail, ErrorInfoSchema);
    if (info) return info;
  }
  return undefined;
}

export function statusInit<R extends Reason>(code: CodeOf<R>, reason: R, message: string): MessageInitShape<typeof StatusSchema> {
  return new RpcError(code, reason, message).toStatus();
}

/** The reasons the catalogue declares with `code`. */
type ReasonFor<C extends Code> = { [R in Reason]: C extends CodeOf<R> ? R : never }[Reason];

// The catalogue lists INVALID_ARGUMENT (etc.) among the codes of every ReasonFor<...>: the casts only tell tsc so.
export const invalidArgument = (reason: ReasonFor<Code.INVALID_ARGUMENT>, message: string, metadata?: Record<string, string>) =>
  new RpcError(Code.INVALID_ARGUMENT as CodeOf<typeof reason>, reason, message, metadata);
export const notFound = (reason: ReasonFor<Code.NOT_FOUND>, message: string, metadata?: Record<string, string>) =>
  new RpcError(Code.NOT_FOUND as CodeOf<typeof reason>, reason, message, metadata);
export const unavailable = (reason: ReasonFor<Code.UNAVAILABLE>, message: string, metadata?: Record<string, string>) =>
  new RpcError(Code.UNAVAILABLE as CodeOf<typeof reason>, reason, message, metadata);

/** Anything thrown that is not an RpcError is a bug or an outage: the caller learns only that. */
export function toRpcError(error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  if (isServiceError(error)) return RpcError.fromServiceError(error);
  return new RpcError(Code.INTERNAL, "INTERNAL", "internal error");
}

export function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as ServiceError).code === "number" && "metadata" in error;
}
