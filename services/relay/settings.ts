import { z } from "zod";
import { ConfigError } from "../../runtime/config.js";

const int = (min: number) => z.coerce.number().int().min(min);

/**
 * Relay settings not (yet) in runtime/config.ts, read from the environment with their defaults.
 * Each is named in the error when invalid.
 */
const settings = {
  topicPartitions: { env: "UMW_TOPIC_PARTITIONS", schema: int(1).default(6) },
  batchSize: { env: "UMW_RELAY_BATCH_SIZE", schema: int(1).default(500) },
  pollMs: { env: "UMW_RELAY_POLL_MS", schema: int(10).default(500) },
  lockRetryMs: { env: "UMW_RELAY_LOCK_RETRY_MS", schema: int(50).default(1_000) },
  outboxRetentionMs: { env: "UMW_OUTBOX_RETENTION_MS", schema: int(0).default(3_600_000) },
} as const;

export type RelaySettings = { [K in keyof typeof settings]: number };

export function relaySettings(env: NodeJS.ProcessEnv = process.env): RelaySettings {
  return readSettings(settings, env) as RelaySettings;
}

export function readSettings(spec: Record<string, { env: string; schema: z.ZodType }>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, setting] of Object.entries(spec)) {
    const raw = env[setting.env];
    const result = setting.schema.safeParse(raw === "" ? undefined : raw);
    if (result.success) out[key] = result.data;
    else problems.push(`${setting.env}=${JSON.stringify(raw)}: ${result.error.issues.map((issue) => issue.message).join("; ")}`);
  }
  if (problems.length) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  return out;
}
