import { join } from "node:path";
import { DevIssuer } from "../../services/edge/dev-issuer.js";

/**
 * The environment of a `umw serve all --embedded` child in a test: nothing of the caller's UMW_*
 * (npm test exports the infrastructure URLs), the given ports and certificates, and the
 * infrastructure's URLs on closed ports, so any use of Redis, Postgres or Kafka would fail.
 * Authentication is the default `dev` mode, its key in the certificates folder: `devToken` mints
 * tokens the child's edge accepts.
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
    UMW_AUTH_MODE: "dev",
    UMW_AUTH_DEV_KEYS_DIR: devKeysDir(certsDir),
    ...extra,
  };
}

const devKeysDir = (certsDir: string) => join(certsDir, "dev-issuer");

/**
 * `Bearer <token>` of the dev issuer of a child started with embeddedEnv(ports, certsDir): for
 * `tenant`, every scope, an hour. Made before the child starts, the key is the one it then loads.
 */
export async function devAuthorization(certsDir: string, edgePort: number, tenant: string, subject = "tester"): Promise<string> {
  const issuer = await DevIssuer.open(devKeysDir(certsDir), `http://127.0.0.1:${edgePort}`);
  const token = await issuer.token({ subject, audience: "umw", ttlS: 3600, extra: { tenant, scope: "entities:read entities:write commands:read realtime:subscribe" } });
  return `Bearer ${token}`;
}
