import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "./errors.js";
import { observeStream, statusCodeOf, type ServerInterceptor } from "./interceptor.js";
import { defaultRegistry, LATENCY_BUCKETS, type Counter, type Histogram, type Labels, type Registry } from "./metrics.js";
import { methodPath } from "./service-definition.js";

/** Where the server reports each finished call. */
export interface CallMetrics {
  callDone(method: DescMethod, code: Code, seconds: number): void;
}

/** Server: reports every call's status code and duration (for a stream, when it ends). */
export function serverMetrics(metrics: CallMetrics): ServerInterceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const done = (error: unknown) => metrics.callDone(req.method, statusCodeOf(error), (performance.now() - started) / 1000);
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

/**
 * Call metrics in a runtime/metrics.ts registry: `umw_grpc_server_handled_total{method,code}` and
 * `umw_grpc_server_handling_seconds{method}` (for a stream, how long it was open).
 */
export function prometheusCallMetrics(registry: Registry = defaultRegistry): CallMetrics {
  const handled: Counter = registry.counter({ name: "umw_grpc_server_handled_total", help: "gRPC calls finished, by method and status code", labelNames: ["method", "code"] });
  const seconds: Histogram = registry.histogram({ name: "umw_grpc_server_handling_seconds", help: "gRPC call duration in seconds, by method", labelNames: ["method"], buckets: LATENCY_BUCKETS });
  const labels = new Map<DescMethod, Labels>();
  return {
    callDone(method, code, elapsed) {
      let methodLabels = labels.get(method);
      if (!methodLabels) labels.set(method, (methodLabels = { method: methodPath(method) }));
      handled.inc({ ...methodLabels, code: Code[code] ?? String(code) });
      seconds.observe(methodLabels, elapsed);
    },
  };
}
