import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";

const tracer = trace.getTracer("umw.cache");

/** Where the Redis commands go (a span's `server.address` / `server.port`). */
export interface RedisServer {
  readonly host?: string | undefined;
  readonly port?: number | undefined;
}

/**
 * Runs a cache lookup (GET, MGET) traced by what it found. Inside a recording span:
 *
 * - every key found (the cache hit, a read's common case): no span of its own, the active span gets
 *   `umw.cache.hit: true`; a span per hit would be a quarter of a sampled read's spans, and each
 *   costs its serialization and export;
 * - anything missing, or a failure: the lookup's Redis CLIENT span as instrumentation-ioredis would
 *   have made it (`db.system.name`, `db.operation.name`, `db.query.text`, `server.*`; ERROR with the
 *   exception on a failure), started when the lookup started, and the active span gets
 *   `umw.cache.hit: false`; the miss's Postgres and Redis spans that follow come from the
 *   instrumentations as before.
 *
 * The command runs outside the active span so that instrumentation-ioredis (`requireParentSpan`)
 * makes no span for it. Outside a recording span (unsampled, tracing off) this is the lookup alone.
 */
export async function tracedLookup<T>(
  operation: "get" | "mget",
  keys: readonly string[],
  server: RedisServer,
  lookup: () => Promise<T>,
  foundAll: (result: T) => boolean,
): Promise<T> {
  const active = context.active();
  const span = trace.getSpan(active);
  if (span === undefined || !span.isRecording()) return lookup();
  const startTime = performance.now();
  let result: T;
  try {
    result = await context.with(trace.deleteSpan(active), lookup);
  } catch (error) {
    span.setAttribute("umw.cache.hit", false);
    const redisSpan = lookupSpan(operation, keys, server, startTime);
    redisSpan.recordException(error as Error);
    redisSpan.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
    redisSpan.end(performance.now());
    throw error;
  }
  const hit = foundAll(result);
  span.setAttribute("umw.cache.hit", hit);
  if (!hit) lookupSpan(operation, keys, server, startTime).end(performance.now());
  return result;
}

function lookupSpan(operation: string, keys: readonly string[], server: RedisServer, startTime: number) {
  return tracer.startSpan(operation, {
    kind: SpanKind.CLIENT,
    startTime,
    attributes: {
      "db.system.name": "redis",
      "db.operation.name": operation,
      "db.query.text": `${operation} ${keys.join(" ")}`,
      ...(server.host === undefined ? {} : { "server.address": server.host }),
      ...(server.port === undefined ? {} : { "server.port": server.port }),
    },
  });
}
