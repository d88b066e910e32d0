import { pino, type Logger } from "pino";
import { configDefaults } from "./config.js";

export type { Logger };

let root: Logger | undefined;

/**
 * One JSON logger per process; each service and call gets a child with its own bindings. The
 * level is the config's `logLevel` (UMW_LOG_LEVEL), passed by whoever loaded the config.
 */
export function rootLogger(level: string = configDefaults().logLevel): Logger {
  root ??= pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  return root;
}

export function serviceLogger(service: string): Logger {
  return rootLogger().child({ service });
}
