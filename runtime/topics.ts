import type { Config } from "./config.js";

/** Kafka topics, prefixed per deployment (and per test run, for isolation). */
export function topicNames(config: Pick<Config, "topicPrefix">) {
  const prefix = config.topicPrefix;
  return {
    commands: `${prefix}umw.commands.v1`,
    commandsDlq: `${prefix}umw.commands.dlq.v1`,
    entityEvents: `${prefix}umw.entity-events.v1`,
  } as const;
}
