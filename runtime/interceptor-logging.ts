import { Code } from "./errors.js";
import { observeStream, statusCodeOf, type ServerInterceptor } from "./interceptor.js";
import type { Logger } from "./logger.js";

/**
 * Server: one debug line per finished call with its status code and duration (for a stream, when
 * it ends). Costs nothing when debug logging is off.
 */
export function serverLogging(log: Logger): ServerInterceptor {
  return (next) => async (req) => {
    if (!log.isLevelEnabled("debug")) return next(req);
    const started = performance.now();
    const done = (error: unknown) =>
      req.context.log.debug({ code: Code[statusCodeOf(error)], ms: Math.round((performance.now() - started) * 10) / 10 }, "call done");
    let response;
    try {
      response = await next(req);
    } catch (error) {
      done(error);
      throw error;
    }
    if (!response.stream) {
      done(undefined);
      return response;
    }
    return { stream: true, message: observeStream(response.message, undefined, done) };
  };
}
