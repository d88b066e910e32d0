import { randomBytes } from "node:crypto";
import type { SASLOptions } from "kafkajs";
import { loadConfig, type Config } from "../../runtime/config.js";
import { kafkaSasl } from "../../runtime/kafka-sasl.js";

const config = loadConfig({ ...process.env, UMW_CONFIG: "" });

/**
 * Infra URLs and credentials as scripts/infra.sh starts them (`source scripts/infra-env.sh`;
 * overridable with the same UMW_* variables): `kafkaSasl` goes into every Kafka client a test
 * makes, `pgRolePasswordsDir` is what `umw serve` children use to connect as the service roles.
 */
export const infra: Pick<Config, "redisUrl" | "pgUrl" | "pgReplicaUrl" | "kafkaBrokers" | "pgRolePasswordsDir"> & { readonly kafkaSasl: SASLOptions | undefined } = {
  redisUrl: config.redisUrl,
  pgUrl: config.pgUrl,
  pgReplicaUrl: config.pgReplicaUrl,
  kafkaBrokers: config.kafkaBrokers,
  pgRolePasswordsDir: config.pgRolePasswordsDir,
  kafkaSasl: kafkaSasl(config),
};

/** A short random suffix that keeps names of one test run apart from every other run. */
export function runId(): string {
  return randomBytes(5).toString("hex");
}
