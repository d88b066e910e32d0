import { createRequire } from "node:module";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { IORedisInstrumentation } from "@opentelemetry/instrumentation-ioredis";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { core, NodeSDK, resources, tracing } from "@opentelemetry/sdk-node";
import type { Config } from "./config.js";
import { setCallTracing } from "./interceptor-tracing.js";
import { NewTraceSampler } from "./new-trace-sampling.js";
import { processContext } from "./async-context.js";

/** The modules the instrumentations patch (all CommonJS; see `startTelemetry`). */
const PATCHED_MODULES = ["pg", "ioredis"] as const;

export interface Telemetry {
  /** Flushes the spans still buffered and stops exporting. */
  shutdown(): Promise<void>;
}

const OFF: Telemetry = { shutdown: async () => undefined };

/**
 * Starts OpenTelemetry tracing for this process, once, before the services are wired: spans go over
 * OTLP gRPC to `UMW_OTLP_ENDPOINT` (empty: tracing is off and this does nothing), sampled
 * parent-based at `UMW_TRACE_SAMPLE_RATIO`, under `serviceName`.
 *
 * Calls are not patched: gRPC calls (server and client) get their spans from the interceptor chains
 * and HTTP requests from the edge's entry (runtime/interceptor-tracing.ts, turned on here), which
 * do nothing for an unsampled call but pass its `traceparent` on; instrumentation-grpc and -http
 * cost every call about as much sampled or not. Postgres and Redis keep their instrumentations,
 * which only make spans inside a recording one (`requireParentSpan`: a check of the active context
 * per statement or command otherwise).
 *
 * umw is ESM, and the instrumentations patch modules as they are `require`d. pg and ioredis are
 * CommonJS and patched on prototypes (pg's Client.query, ioredis' sendCommand), shared by every
 * importer. So instead of an ESM loader hook (import-in-the-middle), the SDK is started and then
 * each module is required once through the patched `require`, which patches the prototypes whether
 * or not an `import` loaded the module before. Kafka and pino are not patched: the message spans are
 * explicit in the bus (runtime/message-tracing.ts: the relay publishes batches of rows that belong
 * to different traces, which instrumentation-kafkajs would all parent on the relay's own context),
 * and the log lines get their trace ids from a pino mixin (runtime/logger.ts).
 */
export function startTelemetry(config: Pick<Config, "otlpEndpoint" | "traceSampleRatio">, serviceName: string): Telemetry {
  if (!config.otlpEndpoint) return OFF;
  const newTraces = new NewTraceSampler(config.traceSampleRatio);
  const sdk = new NodeSDK({
    resource: resources.resourceFromAttributes({ "service.name": serviceName }),
    spanProcessors: [
      new tracing.BatchSpanProcessor(new OTLPTraceExporter({ url: config.otlpEndpoint }), {
        // Exports of 2,048 spans instead of the SDK's 512: about 15 % less CPU per sampled span
        // (docs/observability.md, "What a span costs"). The OTEL_BSP_* variables still win.
        maxExportBatchSize: core.getNumberFromEnv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") ?? 2048,
        maxQueueSize: core.getNumberFromEnv("OTEL_BSP_MAX_QUEUE_SIZE") ?? 8192,
      }),
    ],
    sampler: new tracing.ParentBasedSampler({ root: newTraces }),
    // The process's one async-local store (runtime/async-context.ts), not a second one of the SDK's.
    contextManager: processContext,
    instrumentations: [
      new PgInstrumentation({ requireParentSpan: true }),
      new IORedisInstrumentation({ requireParentSpan: true }),
    ],
    // Only traces: metrics are prom-client's, logs are pino's.
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  const require = createRequire(import.meta.url);
  for (const name of PATCHED_MODULES) require(name);
  setCallTracing(true, newTraces);
  return {
    shutdown: () => {
      setCallTracing(false);
      return sdk.shutdown();
    },
  };
}

/** The service name of a process serving `services`: `umw-<name>` for one, `umw` for several. */
export function telemetryServiceName(services: readonly string[]): string {
  return services.length === 1 ? `umw-${services[0]}` : "umw";
}
