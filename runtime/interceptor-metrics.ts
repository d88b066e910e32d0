import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "./errors.js";
import { statusCodeOf, whenCallEnds, type ClientInterceptor, type ServerInterceptor } from "./interceptor.js";
import { counter, defaultRegistry, histogram, LATENCY_BUCKETS, type Counter, type Histogram, type Registry } from "./metrics.js";

/** Where a server or a client reports each finished call. */
export interface CallMetrics {
  callDone(method: DescMethod, code: Code, seconds: number, streaming: boolean): void;
}

/** Server: reports every call's status code and duration (for a stream, when it ends). */
export function serverMetrics(metrics: CallMetrics): ServerInterceptor {
  return (next) => (req) => whenCallEnds(next(req), reporter(metrics, req.method));
}

/** Client: the same, seen from the caller (a failure to connect counts as UNAVAILABLE). */
export function clientMetrics(metrics: CallMetrics): ClientInterceptor {
  return (next) => (req) => whenCallEnds(next(req), reporter(metrics, req.method));
}

/** Reports one call to `metrics` when it ends, timed from now. */
function reporter(metrics: CallMetrics, method: DescMethod): (error: unknown) => void {
  const started = performance.now();
  const streaming = method.methodKind !== "unary";
  return (error) => metrics.callDone(method, statusCodeOf(error), (performance.now() - started) / 1000, streaming);
}

type RpcLabel = "rpc_system" | "rpc_service" | "rpc_method" | "rpc_grpc_status_code";
const RPC_LABELS: RpcLabel[] = ["rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"];

/**
 * OpenTelemetry's RPC semantic conventions as Prometheus names (`rpc.server.duration` →
 * `rpc_server_duration_seconds`): `rpc_<side>_duration_seconds` is the latency of unary calls
 * (a stream's lifetime says nothing about latency), `rpc_<side>_calls_total` counts every finished
 * call, streams included, by status code. Label values come from the protobuf descriptors, never
 * from a request, so the series are bounded by the methods of the mesh.
 */
export function prometheusCallMetrics(side: "server" | "client", registry: Registry = defaultRegistry): CallMetrics {
  const calls: Counter<RpcLabel> = counter(registry, {
    name: `rpc_${side}_calls_total`,
    help: `gRPC calls finished (${side} side), by service, method and status code; streams included.`,
    labelNames: RPC_LABELS,
  });
  const duration: Histogram<RpcLabel> = histogram(registry, {
    name: `rpc_${side}_duration_seconds`,
    help: `Duration of unary gRPC calls (${side} side), by service, method and status code.`,
    labelNames: RPC_LABELS,
    buckets: LATENCY_BUCKETS,
  });
  // The label set of each (method, code), made once: a call allocates none.
  const byMethod = new Map<DescMethod, Record<RpcLabel, string>[]>();
  return {
    callDone(method, code, seconds, streaming) {
      let byCode = byMethod.get(method);
      if (!byCode) byMethod.set(method, (byCode = []));
      const withCode = (byCode[code] ??= { rpc_system: "grpc", rpc_service: method.parent.typeName, rpc_method: method.name, rpc_grpc_status_code: String(code) });
      calls.inc(withCode);
      if (!streaming) duration.observe(withCode, seconds);
    },
  };
}

/** The code as Prometheus sees it (label value) back to its name, for `umw status`. */
export function codeName(label: string): string {
  return Code[Number(label)] ?? label;
}
