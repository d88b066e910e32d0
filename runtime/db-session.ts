import type { Sql } from "./sql.js";

/**
 * One database connection held for a long time: what session-level advisory locks and LISTEN need
 * (a pool hands out a different connection per query). Losing it loses the lock and the
 * notifications, so `lost` is how its owner learns that it is no longer leader / no longer woken.
 * Opened by Database.openSession(); the adapters are runtime/pg-session.ts and runtime/pglite-session.ts.
 */
export interface DbSession extends Sql {
  /** Backend process id: lets tests and operators `pg_terminate_backend` it. */
  readonly pid: number | undefined;
  /** Resolves (never rejects) with the reason once the connection is gone. */
  readonly lost: Promise<Error>;
  readonly isLost: boolean;
  /**
   * Runs fn in one transaction on this session: committed when it resolves, rolled back when it
   * throws. Settings that must not outlive it go in with `SET LOCAL` (the session may be a
   * connection other components share, as in the embedded mode).
   */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /** LISTEN on a channel; `onNotify` gets each payload. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<void>;
  /** Gives the connection up (closed, never returned to a pool: it may hold locks or LISTENs). */
  release(): Promise<void>;
}

export type OpenSession = () => Promise<DbSession>;
