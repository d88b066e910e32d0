import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, type Config } from "./config.js";
import { registerSecret } from "./redact.js";

/**
 * The Postgres role of each service that talks to Postgres, with least privilege (granted by
 * migrations/grants.sql, which `umw migrate` runs after the migrations on every database it
 * migrates; scripts/infra.sh creates the roles with their passwords):
 *
 * - umw_query: SELECT on entities and tombstones (the replica; it cannot write, on either server);
 * - umw_command: commands (insert, read), idempotency keys, outbox (insert), entities (read, for preconditions);
 * - umw_processor: entities and tombstones (write), inbox, outbox (insert), commands (status);
 * - umw_relay: the outbox (read, mark published, prune);
 * - umw_realtime: SELECT on entities and commands (snapshots, own-command catch-up), LISTEN.
 *
 * The owner (UMW_PG_URL's user) owns the tables and runs the migrations.
 */
export const SERVICE_ROLES = {
  query: "umw_query",
  command: "umw_command",
  processor: "umw_processor",
  relay: "umw_relay",
  realtime: "umw_realtime",
} as const;

export type DatabaseUser = keyof typeof SERVICE_ROLES;

/**
 * The URL a service connects with: `url` itself when UMW_PG_ROLE_PASSWORDS_DIR is unset (or no
 * service is named), else `url` with the service's role and the password read from
 * `<dir>/<role>` (one line; a trailing newline is ignored).
 */
export function serviceDatabaseUrl(config: Pick<Config, "pgRolePasswordsDir">, url: string, service: DatabaseUser | undefined): string {
  if (!config.pgRolePasswordsDir || !service) return url;
  const role = SERVICE_ROLES[service];
  const file = join(config.pgRolePasswordsDir, role);
  let password: string;
  try {
    password = readFileSync(file, "utf8").replace(/\r?\n$/, "");
  } catch (error) {
    throw new ConfigError(`invalid configuration: UMW_PG_ROLE_PASSWORDS_DIR=${config.pgRolePasswordsDir}: cannot read the password of ${role} (${(error as Error).message})`);
  }
  if (!password) throw new ConfigError(`invalid configuration: ${file} is empty`);
  registerSecret(password);
  const parsed = new URL(url);
  parsed.username = role;
  parsed.password = password;
  return parsed.toString();
}
