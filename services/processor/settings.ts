import { ConfigError } from "../../runtime/config.js";
import type { TopicSpec } from "../../runtime/bus.js";
import type { Topics } from "./processor.js";

/**
 * Settings this worker needs that runtime/config.ts does not have yet. Read from the environment
 * and validated here until the lead moves them into `Config` (see the report of issue 4).
 */
export interface WorkerSettings {
  /** UMW_PROCESSOR_MAX_ATTEMPTS: attempts at a failing message before the DLQ (default 5). */
  readonly maxAttempts: number;
  /** UMW_TOPIC_PARTITIONS: partitions of topics created at start (default 6). */
  readonly topicPartitions: number;
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > max) throw new ConfigError(`invalid configuration:\n  ${name}=${JSON.stringify(raw)}: must be an integer from 1 to ${max}`);
  return value;
}

export function workerSettings(env: NodeJS.ProcessEnv = process.env): WorkerSettings {
  return {
    maxAttempts: positiveInt(env, "UMW_PROCESSOR_MAX_ATTEMPTS", 5, 100),
    topicPartitions: positiveInt(env, "UMW_TOPIC_PARTITIONS", 6, 1_000),
  };
}

/** Every topic of the write path, with its partition count (the DLQ gets the same). */
export function writePathTopics(topics: Topics, partitions: number): TopicSpec[] {
  return [topics.commands, topics.commandsDlq, topics.entityEvents].map((name) => ({ name, partitions }));
}
