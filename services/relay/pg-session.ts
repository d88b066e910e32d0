import pg from "pg";
import type { QueryResult, Sql } from "../../runtime/sql.js";

/**
 * One Postgres connection held for a long time: what session-level advisory locks and LISTEN need
 * (a pool hands out a different connection per query). Losing it loses the lock and the
 * notifications, so `lost` is how its owner learns that it is no longer leader / no longer woken.
 */
export interface PgSession extends Sql {
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

/** Anything that can open a dedicated session: a pg.Pool, a Database made by connectPostgres, a URL. */
export type SessionSource = pg.Pool | { readonly pool: pg.Pool } | string;

export type OpenSession = () => Promise<PgSession>;

/** An opener for `source`, for services that get a Database and need one dedicated connection of it. */
export function sessionOpener(source: SessionSource): OpenSession {
  return () => openPgSession(source);
}

export async function openPgSession(source: SessionSource): Promise<PgSession> {
  let client: pg.Client | pg.PoolClient;
  let done: (destroy: boolean) => Promise<void>;
  if (typeof source === "string") {
    const own = new pg.Client({ connectionString: source, connectionTimeoutMillis: 3_000 });
    // Attach before connect: an 'error' without a listener would crash the process.
    own.on("error", () => undefined);
    try {
      await own.connect();
    } catch (error) {
      await own.end().catch(() => undefined);
      throw error;
    }
    client = own;
    done = () => own.end();
  } else {
    const pool = source instanceof pg.Pool ? source : source.pool;
    const pooled = await pool.connect();
    client = pooled;
    done = async (destroy) => pooled.release(destroy);
  }

  let isLost = false;
  let resolveLost: (error: Error) => void = () => undefined;
  const lost = new Promise<Error>((resolve) => (resolveLost = resolve));
  const markLost = (error: Error) => {
    if (isLost) return;
    isLost = true;
    resolveLost(error);
  };
  const listeners = new Map<string, (payload: string) => void>();
  client.on("error", (error: Error) => markLost(error));
  client.on("end", () => markLost(new Error("connection ended")));
  client.on("notification", (message: pg.Notification) => listeners.get(message.channel)?.(message.payload ?? ""));

  let released = false;
  const query = <R>(text: string, params?: unknown[]) => client.query(text, params) as unknown as Promise<QueryResult<R>>;
  return {
    pid: (client as unknown as { processID?: number }).processID,
    lost,
    get isLost() {
      return isLost;
    },
    query,
    async transaction(fn) {
      await query("BEGIN");
      try {
        const result = await fn({ query });
        await query("COMMIT");
        return result;
      } catch (error) {
        await query("ROLLBACK").catch(() => undefined);
        throw error;
      }
    },
    async listen(channel, onNotify) {
      if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`bad channel name ${channel}`);
      listeners.set(channel, onNotify);
      await client.query(`LISTEN ${channel}`);
    },
    async release() {
      if (released) return;
      released = true;
      markLost(new Error("released"));
      await done(true).catch(() => undefined);
    },
  };
}
