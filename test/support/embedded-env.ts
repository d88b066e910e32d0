/**
 * The environment of a `umw serve all --embedded` child in a test: nothing of the caller's UMW_*
 * (npm test exports the infrastructure URLs), the given ports and certificates, and the
 * infrastructure's URLs on closed ports, so any use of Redis, Postgres or Kafka would fail.
 */
export function embeddedEnv(ports: Record<string, number>, certsDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("UMW_")));
  return {
    ...inherited,
    ...Object.fromEntries(Object.entries(ports).map(([name, port]) => [name, String(port)])),
    UMW_CONFIG: "config/demo.yaml",
    UMW_CERTS_DIR: certsDir,
    UMW_LOG_LEVEL: "info",
    UMW_PG_URL: "postgres://umw:umw@127.0.0.1:1/umw",
    UMW_PG_REPLICA_URL: "postgres://umw:umw@127.0.0.1:1/umw",
    UMW_REDIS_URL: "redis://127.0.0.1:1",
    UMW_KAFKA_BROKERS: "127.0.0.1:1",
    ...extra,
  };
}
