import type { TopicSpec } from "./bus.js";
import type { Config } from "./config.js";

/** Kafka topics, prefixed per deployment (and per test run, for isolation). The only place topic names are built. */
export function topicNames(config: Pick<Config, "topicPrefix">) {
  const prefix = config.topicPrefix;
  return {
    commands: `${prefix}umw.commands.v1`,
    commandsDlq: `${prefix}umw.commands.dlq.v1`,
    entityEvents: `${prefix}umw.entity-events.v1`,
  } as const;
}

export type Topics = ReturnType<typeof topicNames>;

/** Every umw topic with one partition count (the DLQ gets the same): what a service ensures at start. */
export function topicSpecs(topics: Topics, partitions: number): TopicSpec[] {
  return Object.values(topics).map((name) => ({ name, partitions }));
}
