import type pg from "pg";
import type { Sql } from "../../runtime/sql.js";

type QueryArgs = [text: string, values?: unknown[]] | [config: { readonly text: string; readonly values?: unknown[] }];

/**
 * The query service's "read replica" in embedded mode: the part of pg.Pool that PostgresBackend
 * uses (`query(text, values)` and `query({name, text, values})`), answered by the PGlite primary.
 * Statement names are dropped (PGlite plans each query; there is no connection to prepare on).
 * Only `query` exists: anything else of pg.Pool (connect, end, events) is not there, so
 * test/embedded.test.ts reading through the edge is what proves the backend needs no more.
 */
export function pgliteReplicaPool(sql: Sql): pg.Pool {
  const query = async (...args: QueryArgs) => {
    const [first, second] = args;
    const { rows, rowCount } = typeof first === "string" ? await sql.query(first, second) : await sql.query(first.text, first.values);
    return { rows, rowCount: rowCount ?? rows.length, command: "", oid: 0, fields: [] };
  };
  return { query } as unknown as pg.Pool;
}
