import type { ServiceError } from "@grpc/grpc-js";
import { Code, isServiceError, RpcError, toRpcError } from "./errors.js";
import { observeStream, type ClientInterceptor, type ServerCallContext, type ServerInterceptor } from "./interceptor.js";

/**
 * Server: whatever the handler (or an interceptor inside this one) throws becomes an RpcError,
 * which the server sends as the gRPC status with a google.rpc.Status (ErrorInfo) in the trailers.
 * Anything that is not an RpcError is a bug or an outage: logged here, and the caller learns only
 * INTERNAL.
 */
export const serverErrors: ServerInterceptor = (next) => async (req) => {
  try {
    const response = await next(req);
    return response.stream ? { stream: true, message: observeStream(response.message, (error) => callError(req.context, error)) } : response;
  } catch (error) {
    throw callError(req.context, error);
  }
};

function callError(ctx: ServerCallContext, error: unknown): RpcError {
  const rpcError = toRpcError(error);
  if (rpcError.code === Code.INTERNAL || rpcError.code === Code.UNKNOWN) ctx.log.error({ err: error }, "call failed");
  return rpcError;
}

/**
 * Client: a failed call rejects with an RpcError (code, message, ErrorInfo reason and the
 * service's trailers). The grpc-js error it was read from stays its `cause` (see `wireError`), for
 * callers that pass the upstream's Status on whole, such as the edge.
 */
export const clientErrors: ClientInterceptor = (next) => async (req) => {
  try {
    const response = await next(req);
    return response.stream ? { stream: true, message: observeStream(response.message, fromWire) } : response;
  } catch (error) {
    throw fromWire(error);
  }
};

function fromWire(error: unknown): unknown {
  if (error instanceof RpcError || !isServiceError(error)) return error;
  const rpcError = RpcError.fromServiceError(error);
  rpcError.cause = error;
  return rpcError;
}

/** The grpc-js error behind a mesh client failure (all Status details, all trailers), if it came from the wire. */
export function wireError(error: unknown): ServiceError | undefined {
  // An RpcError looks like a grpc-js error (a numeric code, a `metadata` record): ask it first.
  if (error instanceof RpcError) return isServiceError(error.cause) ? error.cause : undefined;
  return isServiceError(error) ? error : undefined;
}
