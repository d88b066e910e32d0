import type { PGlite } from "@electric-sql/pglite";
import type { QueryResult } from "../../runtime/sql.js";
import type { OpenSession, PgSession } from "../relay/pg-session.js";

/**
 * PgSession over PGlite, for what needs "one dedicated connection" (the relay's leader lock and
 * LISTEN, WatchCommand's LISTEN). PGlite is one connection shared by the whole process, so every
 * session is a view of it: session advisory locks are always granted (and re-entrant), LISTEN is
 * PGlite's own `listen()`. A session is lost only when released; releasing drops its listeners.
 */
export function pgliteSessionOpener(pglite: PGlite): OpenSession {
  return async () => {
    if (pglite.closed) throw new Error("PGlite is closed");
    return openSession(pglite);
  };
}

function openSession(pglite: PGlite): PgSession {
  const unlisteners: (() => Promise<void>)[] = [];
  let isLost = false;
  let resolveLost: (reason: Error) => void = () => undefined;
  const lost = new Promise<Error>((resolve) => (resolveLost = resolve));
  return {
    pid: undefined,
    lost,
    get isLost() {
      return isLost;
    },
    async query<R>(text: string, params?: unknown[]): Promise<QueryResult<R>> {
      if (isLost) throw new Error("PGlite session released");
      const result = await pglite.query<R>(text, params);
      // pg's rowCount: rows returned, or rows changed by INSERT/UPDATE/DELETE without RETURNING.
      return { rows: result.rows, rowCount: result.rows.length || (result.affectedRows ?? 0) };
    },
    async listen(channel, onNotify) {
      if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`bad channel name ${channel}`);
      if (isLost) throw new Error("PGlite session released");
      unlisteners.push(await pglite.listen(channel, onNotify));
    },
    async release() {
      if (isLost) return;
      isLost = true;
      resolveLost(new Error("released"));
      for (const unlisten of unlisteners.splice(0)) {
        if (!pglite.closed) await unlisten().catch(() => undefined);
      }
    },
  };
}
