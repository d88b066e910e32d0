import { isConnectionError } from "./sql.js";

/**
 * What a Postgres failure means, the one classification every service uses
 * (https://www.postgresql.org/docs/15/errcodes-appendix.html):
 * - `connection`: the server or the way to it is gone (refused, reset, restarting, 08xxx, 57P0x,
 *   53xxx, 58xxx). Retry later; callers see UNAVAILABLE.
 * - `failover`: 25006 read_only_sql_transaction, the primary was demoted. Retry later (UNAVAILABLE).
 * - `timeout`: 57014 query_canceled (statement timeout). Retry later (UNAVAILABLE).
 * - `conflict`: 40001 serialization failure (also a hot standby's recovery conflict), 40P01
 *   deadlock, 55P03 lock not available. Retry the transaction.
 * - `data`: 22 data exception, 23 integrity violation, 54 program limit: the statement's values can
 *   never succeed. Do not retry.
 * - `unknown`: anything else (a bug, a schema out of step).
 */
export type PgErrorKind = "connection" | "failover" | "timeout" | "conflict" | "data" | "unknown";

const CONFLICT = new Set(["40001", "40P01", "55P03"]);
const DATA_CLASSES = new Set(["22", "23", "54"]);

export function sqlstateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith("E") ? code : undefined;
}

/** What logs and dead letters record of a failure: its SQLSTATE, or the Node error code (ECONNREFUSED) of a failure on the way to the server. */
export function pgErrorCodeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return sqlstateOf(error) ?? (typeof code === "string" && /^E[A-Z]+$/.test(code) ? code : undefined);
}

export function classifyPgError(error: unknown): PgErrorKind {
  const sqlstate = sqlstateOf(error);
  if (sqlstate === "25006") return "failover";
  if (sqlstate === "57014") return "timeout";
  if (sqlstate && CONFLICT.has(sqlstate)) return "conflict";
  if (isConnectionError(error) || (sqlstate && ["53", "58"].includes(sqlstate.slice(0, 2)))) return "connection";
  if (sqlstate && DATA_CLASSES.has(sqlstate.slice(0, 2))) return "data";
  return "unknown";
}

/** Worth another try of the same work: everything but `data` and `unknown`. */
export function isTransientPgError(error: unknown): boolean {
  const kind = classifyPgError(error);
  return kind !== "data" && kind !== "unknown";
}
