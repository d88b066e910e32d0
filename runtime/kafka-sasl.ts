import type { SASLOptions } from "kafkajs";
import { ConfigError, type Config } from "./config.js";

export type KafkaSaslSettings = Pick<Config, "kafkaSaslMechanism" | "kafkaSaslUsername" | "kafkaSaslPassword">;

/**
 * kafkajs' `sasl` option from the settings (UMW_KAFKA_SASL_*): undefined for `none` (plaintext
 * without authentication). SASL runs over the plaintext listener (SASL_PLAINTEXT), which is what
 * scripts/infra.sh serves on loopback.
 */
export function kafkaSasl(settings: KafkaSaslSettings): SASLOptions | undefined {
  const { kafkaSaslMechanism: mechanism, kafkaSaslUsername: username, kafkaSaslPassword: password } = settings;
  if (mechanism === "none") return undefined;
  if (!username || !password) {
    throw new ConfigError(`invalid configuration: UMW_KAFKA_SASL_MECHANISM=${mechanism} needs UMW_KAFKA_SASL_USERNAME and UMW_KAFKA_SASL_PASSWORD (or UMW_KAFKA_SASL_PASSWORD_FILE)`);
  }
  return { mechanism, username, password };
}
