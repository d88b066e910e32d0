import { Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, type ErrorInfo } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema, type Status } from "../gen/google/rpc/status_pb.js";

export { Code };

/** The domain every umw ErrorInfo carries. */
export const ERROR_DOMAIN = "umw.dev";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/**
 * A failure meant for the caller: a gRPC code, a readable message, and a machine-readable reason
 * (google.rpc.ErrorInfo) that survives every protocol the edge speaks.
 */
export class RpcError extends Error {
  override readonly name = "RpcError";
  constructor(
    readonly code: Code,
    readonly reason: string,
    message: string,
    readonly metadata: Record<string, string> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toStatus(): Status {
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

  static fromStatus(status: Status): RpcError {
    const info = errorInfoOf(status);
    return new RpcError(status.code as Code, info?.reason ?? Code[status.code] ?? "UNKNOWN", status.message, info?.metadata ?? {});
  }

  /** Reads a grpc-js client error back into an RpcError, keeping the ErrorInfo and the service's own trailers. */
  static fromServiceError(error: ServiceError): RpcError {
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(error.metadata?.getMap() ?? {})) {
      if (typeof value === "string" && !key.startsWith("grpc-")) headers[key] = value;
    }
    const raw = error.metadata?.get(STATUS_DETAILS_KEY)[0];
    const status = raw instanceof Buffer ? RpcError.fromStatus(fromBinary(StatusSchema, raw)) : undefined;
    if (status) return new RpcError(status.code, status.reason, status.message, status.metadata, headers);
    return new RpcError(error.code ?? Code.UNKNOWN, Code[error.code] ?? "UNKNOWN", error.details ?? error.message, {}, headers);
  }
}

export function errorInfoOf(status: Status): ErrorInfo | undefined {
  for (const detail of status.details) {
    const info = anyUnpack(detail, ErrorInfoSchema);
    if (info) return info;
  }
  return undefined;
}

export function statusInit(code: Code, reason: string, message: string): MessageInitShape<typeof StatusSchema> {
  return new RpcError(code, reason, message).toStatus();
}

export const invalidArgument = (reason: string, message: string, metadata?: Record<string, string>) =>
  new RpcError(Code.INVALID_ARGUMENT, reason, message, metadata);
export const notFound = (reason: string, message: string, metadata?: Record<string, string>) =>
  new RpcError(Code.NOT_FOUND, reason, message, metadata);
export const unavailable = (reason: string, message: string, metadata?: Record<string, string>) =>
  new RpcError(Code.UNAVAILABLE, reason, message, metadata);

/** Anything thrown that is not an RpcError is a bug or an outage: the caller learns only that. */
export function toRpcError(error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  if (isServiceError(error)) return RpcError.fromServiceError(error);
  return new RpcError(Code.INTERNAL, "INTERNAL", "internal error");
}

export function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as ServiceError).code === "number" && "metadata" in error;
}
