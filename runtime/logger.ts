import { pino, type Logger } from "pino";
import { configDefaults } from "./config.js";
import { REDACTED, redactError, redactText, redactUrl, redactValue } from "./redact.js";

export type { Logger };

let root: Logger | undefined;

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
  root ??= pino({
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
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
  });
  return root;
}

export function serviceLogger(service: string): Logger {
  return rootLogger().child({ service });
}
