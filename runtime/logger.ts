import { isSpanContextValid, trace } from "@opentelemetry/api";
import { pino, type Logger } from "pino";
import { configDefaults } from "./config.js";
import { currentMessageScope } from "./log-context.js";

export type { Logger };

let root: Logger | undefined;

/**
 * Fields every line gets from where it is logged: `trace_id`/`span_id` inside a recorded span, and
 * the `requestId` of the Kafka message being handled (calls carry theirs as a child binding).
 */
function ambientFields(): Record<string, string> {
  const fields: Record<string, string> = {};
  const span = trace.getActiveSpan()?.spanContext();
  if (span && isSpanContextValid(span)) {
    fields.trace_id = span.traceId;
    fields.span_id = span.spanId;
  }
  const requestId = currentMessageScope()?.requestId;
  if (requestId) fields.requestId = requestId;
  return fields;
}

/**
 * One JSON logger per process; each service and call gets a child with its own bindings. The
 * level is the config's `logLevel` (UMW_LOG_LEVEL), passed by whoever loaded the config.
 */
export function rootLogger(level: string = configDefaults().logLevel): Logger {
  root ??= pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime, mixin: ambientFields });
  return root;
}

export function serviceLogger(service: string): Logger {
  return rootLogger().child({ service });
}
