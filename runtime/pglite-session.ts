import type { PGlite } from "@electric-sql/pglite";
import type { DbSession, OpenSession } from "./db-session.js";
import type { QueryResult, Sql } from "./sql.js";

/**
 * DbSession over PGlite, for what needs "one dedicated connection" (the relay's leader lock and
 * LISTEN, WatchCommand's LISTEN). PGlite is one connection shared by the whole process, so every
 * session is a view of it: session advisory locks are always granted (and re-entrant), LISTEN is
 * PGlite's own `listen()`. A session is lost only when released; releasing drops its listeners.
 * So a plain `SET` on a session would change the connection of every component in the process:
 * session settings go in a `transaction` with `SET LOCAL`.
 */
export function pgliteSessionOpener(pglite: PGlite): OpenSession {
  return async () => {
    if (pglite.closed) throw new Error("PGlite is closed");
    return openSession(pglite);
  };
}

function openSession(pglite: PGlite): DbSession {
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
      return asPgResult(await pglite.query<R>(text, params));
    },
    async transaction(fn) {
      if (isLost) throw new Error("PGlite session released");
      // PGlite's own transaction holds the connection for its whole length: no other component's
      // statement lands inside it, as one would between separate BEGIN / COMMIT queries.
      return pglite.transaction((tx) => fn({ query: async <R>(text: string, params?: unknown[]) => asPgResult(await tx.query<R>(text, params)) } satisfies Sql));
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

/** pg's rowCount: rows returned, or rows changed by INSERT/UPDATE/DELETE without RETURNING. */
export function asPgResult<R>(result: { rows: R[]; affectedRows?: number }): QueryResult<R> {
  return { rows: result.rows, rowCount: result.rows.length || (result.affectedRows ?? 0) };
}
