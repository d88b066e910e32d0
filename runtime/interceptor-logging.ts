import { Code } from "./errors.js";
import { statusCodeOf, whenCallEnds, type ServerInterceptor } from "./interceptor.js";
import type { Logger } from "./logger.js";

/**
 * Server: one debug line per finished call with its status code and duration (for a stream, when
 * it ends). Costs nothing when debug logging is off.
 */
export function serverLogging(log: Logger): ServerInterceptor {
  return (next) => async (req) => {
    if (!log.isLevelEnabled("debug")) return next(req);
    const started = performance.now();
    return whenCallEnds(next(req), (error) =>
      req.context.log.debug({ code: Code[statusCodeOf(error)], ms: Math.round((performance.now() - started) * 10) / 10 }, "call done"),
    );
  };
}
