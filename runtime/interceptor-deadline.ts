import { Code, RpcError } from "./errors.js";
import { observeStream, type ClientInterceptor, type ServerCallContext, type ServerInterceptor } from "./interceptor.js";

/**
 * Server: the call's deadline, never later than `maxCallTimeoutMs` from its start whatever
 * grpc-timeout asked for. The context's abort signal fires at it (runtime/server.ts), and whatever
 * the handler throws once it has passed (an abort, a cancelled downstream call) reaches the caller
 * as DEADLINE_EXCEEDED.
 */
export function serverDeadline(maxCallTimeoutMs: number): ServerInterceptor {
  return (next) => async (req) => {
    const ctx = req.context;
    if (!ctx.deadline) return next(req);
    const latest = Date.now() + maxCallTimeoutMs;
    if (ctx.deadline.getTime() > latest) ctx.deadline = new Date(latest);
    try {
      const response = await next(req);
      return response.stream ? { stream: true, message: observeStream(response.message, (error) => expired(ctx, error)) } : response;
    } catch (error) {
      throw expired(ctx, error);
    }
  };
}

/** Client: the earlier of the call's own deadline and the deadline of the call being served. */
export const clientDeadline: ClientInterceptor = (next) => (req) => {
  const inherited = req.context?.deadline?.getTime();
  if (inherited !== undefined && inherited < req.deadline) req.deadline = inherited;
  return next(req);
};

function expired(ctx: ServerCallContext, error: unknown): unknown {
  if (ctx.deadline && ctx.deadline.getTime() <= Date.now() && !isOwnVerdict(error)) {
    return new RpcError(Code.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "the call's deadline expired");
  }
  return error;
}

/** A failure the handler chose (not a consequence of running out of time). */
function isOwnVerdict(error: unknown): boolean {
  return error instanceof RpcError && error.code !== Code.CANCELLED && error.code !== Code.DEADLINE_EXCEEDED && error.code !== Code.UNKNOWN && error.code !== Code.INTERNAL;
}
