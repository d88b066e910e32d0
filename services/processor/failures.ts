import { classifyPgError } from "../../runtime/pg-errors.js";

/**
 * How the processor treats an error thrown while applying a message (runtime/pg-errors.ts decides
 * what a Postgres failure is):
 * - transient: the database (or the way to it) is briefly unable; the same attempt can succeed
 *   later. Retried in process with backoff.
 * - permanent: the message itself can never be applied (a value Postgres refuses). Dead-lettered
 *   at once: retrying would only delay the partition.
 * - unknown: anything else (a bug, a schema out of step). Retried like a transient failure, and
 *   dead-lettered once the attempts are used up.
 */
export type FailureKind = "transient" | "permanent" | "unknown";

export function classifyFailure(error: unknown): FailureKind {
  const kind = classifyPgError(error);
  if (kind === "data") return "permanent";
  return kind === "unknown" ? "unknown" : "transient";
}

/** The processor's retry delays (runtime/retry.ts: exponential, jittered). */
export interface BackoffOptions {
  /** Delay before the second attempt. */
  readonly initialMs: number;
  /** Upper bound of any one delay. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 2_000 };
