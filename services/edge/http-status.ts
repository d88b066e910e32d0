import { Code, type RpcError } from "../../runtime/errors.js";
import { isReason, REASONS } from "../../runtime/reasons.js";

/** gRPC code -> HTTP status, as grpc-gateway and Envoy's transcoder map them. */
const HTTP_STATUS_BY_CODE: readonly number[] = [
  /* OK */ 200,
  /* CANCELLED */ 499,
  /* UNKNOWN */ 500,
  /* INVALID_ARGUMENT */ 400,
  /* DEADLINE_EXCEEDED */ 504,
  /* NOT_FOUND */ 404,
  /* ALREADY_EXISTS */ 409,
  /* PERMISSION_DENIED */ 403,
  /* RESOURCE_EXHAUSTED */ 429,
  /* FAILED_PRECONDITION */ 400,
  /* ABORTED */ 409,
  /* OUT_OF_RANGE */ 400,
  /* UNIMPLEMENTED */ 501,
  /* INTERNAL */ 500,
  /* UNAVAILABLE */ 503,
  /* DATA_LOSS */ 500,
  /* UNAUTHENTICATED */ 401,
];

/**
 * The HTTP status of a gRPC code. A failed precondition of a conditional request (one that sent
 * If-Match, If-None-Match or If-Unmodified-Since) is 412 Precondition Failed.
 */
export function httpStatusOf(code: number, conditional = false): number {
  if (code === Code.FAILED_PRECONDITION && conditional) return 412;
  return HTTP_STATUS_BY_CODE[code] ?? 500;
}

/**
 * The HTTP status the edge answers a failure with: the one the reasons catalogue names for its
 * reason (405, 412, 413, 415, 422, ... where HTTP says more than the gRPC code), else the code's.
 */
export function httpStatusOfFailure(failure: RpcError, conditional = false): number {
  const spec = isReason(failure.reason) ? REASONS[failure.reason] : undefined;
  return (spec && "httpStatus" in spec ? spec.httpStatus : undefined) ?? httpStatusOf(failure.code, conditional);
}
