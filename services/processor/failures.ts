import { isConnectionError } from "../../runtime/sql.js";

/**
 * How the processor treats an error thrown while applying a message:
 * - transient: the database (or the way to it) is briefly unable; the same attempt can succeed
 *   later. Retried in process with backoff.
 * - permanent: the message itself can never be applied (a value Postgres refuses). Dead-lettered
 *   at once: retrying would only delay the partition.
 * - unknown: anything else (a bug, a schema out of step). Retried like a transient failure, and
 *   dead-lettered once the attempts are used up.
 */
export type FailureKind = "transient" | "permanent" | "unknown";

/** SQLSTATEs worth another try (https://www.postgresql.org/docs/15/errcodes-appendix.html). */
const TRANSIENT_SQLSTATES = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "55P03", // lock_not_available
  "57014", // query_canceled (statement timeout)
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "25006", // read_only_sql_transaction: the primary was demoted, a failover is under way
]);
/** Whole classes: 08 connection exception, 53 insufficient resources, 58 system error. */
const TRANSIENT_CLASSES = new Set(["08", "53", "58"]);
/** Classes that describe the data: 22 data exception (e.g. \u0000 in jsonb), 23 integrity, 54 limits. */
const PERMANENT_CLASSES = new Set(["22", "23", "54"]);

const TRANSIENT_NODE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ENOTFOUND"]);
const TRANSIENT_MESSAGES = [
  /connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /client has encountered a connection error/i,
  /connection (?:is )?(?:closed|ended)/i,
  /cannot use a pool after calling end/i,
];

export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export function classifyFailure(error: unknown): FailureKind {
  // The connection (or the server) went away mid-transaction, e.g. 57P01 on a primary restart.
  if (isConnectionError(error)) return "transient";
  const code = errorCode(error);
  if (code && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith("E")) {
    if (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_CLASSES.has(code.slice(0, 2))) return "transient";
    if (PERMANENT_CLASSES.has(code.slice(0, 2))) return "permanent";
    return "unknown";
  }
  if (code && TRANSIENT_NODE_CODES.has(code)) return "transient";
  const message = error instanceof Error ? error.message : String(error);
  if (TRANSIENT_MESSAGES.some((pattern) => pattern.test(message))) return "transient";
  return "unknown";
}

export interface BackoffOptions {
  /** Delay before the second attempt. */
  readonly initialMs: number;
  /** Upper bound of any one delay. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 2_000 };

/** Exponential backoff with full jitter in [d/2, d]: delay before attempt `attempt + 1`. */
export function backoffDelay(attempt: number, options: BackoffOptions, random = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
