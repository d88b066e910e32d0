import pg from "pg";
import type { DbSession, OpenSession } from "./db-session.js";
import type { QueryResult } from "./sql.js";

/** What a dedicated session is opened from: a pg.Pool (one of its connections, held) or a URL (a connection of its own). */
export type SessionSource = pg.Pool | string;

/** An opener for `source`. */
export function sessionOpener(source: SessionSource): OpenSession {
  return () => openPgSession(source);
}

export async function openPgSession(source: SessionSource): Promise<DbSession> {
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
    const pooled = await source.connect();
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
