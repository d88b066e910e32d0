import { pino, type Logger } from "pino";

export type { Logger };

let root: Logger | undefined;

/** One JSON logger per process; each service and call gets a child with its own bindings. */
export function rootLogger(level = process.env.UMW_LOG_LEVEL ?? "info"): Logger {
  root ??= pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  return root;
}

export function serviceLogger(service: string): Logger {
  return rootLogger().child({ service });
}
