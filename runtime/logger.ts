import { isSpanContextValid, trace } from "@opentelemetry/api";
import { pino, type Logger, type LoggerOptions } from "pino";
import { configDefaults } from "./config.js";
import { REDACTED, redactError, redactText, redactUrl, redactValue } from "./redact.js";
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

/** Log fields that hold a credential, or a URL that may hold one, wherever a caller puts them. */
const REDACT_PATHS = [
  "password", "*.password", "sasl", "*.sasl", "token", "*.token", "secret", "*.secret", "authorization", "*.authorization",
  "url", "*.url", "connectionString", "*.connectionString",
];

/**
 * One JSON logger per process; each service and call gets a child with its own bindings. The
 * level is the config's `logLevel` (UMW_LOG_LEVEL), passed by whoever loaded the config.
 *
 * No credential reaches a line (runtime/redact.ts): pino's `redact` censors credential fields and
 * strips passwords from URL fields; the error serializer, the message hook and the bindings and
 * log formatters take URL passwords and every registered secret out of everything else.
 */
export function rootLogger(level: string = configDefaults().logLevel): Logger {
  root ??= createLogger(level);
  return root;
}

/**
 * A logger with rootLogger's options on `destination` (stdout by default). pino formats the
 * bindings of the root only, so `child` is wrapped to redact each child's bindings too; children
 * inherit the wrapper (a pino child is created from its parent's prototype chain).
 */
export function createLogger(level = "info", destination?: pino.DestinationStream): Logger {
  const logger = destination ? pino(loggerOptions(level), destination) : pino(loggerOptions(level));
  const child = logger.child;
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, redactValue(bindings) as typeof bindings, options);
  } as typeof logger.child;
  return logger;
}

/** The root logger's options: JSON lines, ISO time, and the redaction. */
function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: ambientFields,
    redact: { paths: REDACT_PATHS, censor: (value) => (typeof value === "string" && URL.canParse(value) ? redactUrl(value) : REDACTED) },
    serializers: { err: (error: unknown) => pino.stdSerializers.err(error instanceof Error ? redactError(error) : (redactValue(error) as Error)) },
    formatters: {
      bindings: (bindings) => redactValue(bindings) as Record<string, unknown>,
      log: (object) => redactValue(object) as Record<string, unknown>,
    },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((arg) => (typeof arg === "string" ? redactText(arg) : arg)) as Parameters<typeof method>);
      },
    },
  };
}

export function serviceLogger(service: string): Logger {
  return rootLogger().child({ service });
}
