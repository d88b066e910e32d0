import { PGlite, type PGliteOptions } from "@electric-sql/pglite";
import { readMigrations } from "./migrate.js";
import { pgliteSessionOpener } from "./pglite-session.js";
import type { Database, Sql } from "./sql.js";

/**
 * The embedded store: real Postgres compiled to wasm, in this process, in memory (or in a folder).
 * One connection, so transactions run one at a time; fine for the demo and unit tests.
 * `options` go to PGlite (e.g. `loadDataDir`: start from a dump instead of running initdb).
 */
export async function openPglite(dataDir?: string, options?: PGliteOptions): Promise<Database & { readonly pglite: PGlite }> {
  const pglite = await PGlite.create(dataDir, options);
  await pglite.exec(`CREATE TABLE IF NOT EXISTS umw_schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  const applied = new Set((await pglite.query<{ version: number }>("SELECT version FROM umw_schema_migrations")).rows.map((row) => row.version));
  for (const migration of readMigrations().filter((m) => !applied.has(m.version))) {
    await pglite.transaction(async (tx) => {
      await tx.exec(migration.sql);
      await tx.query("INSERT INTO umw_schema_migrations (version, name) VALUES ($1, $2)", [migration.version, migration.name]);
    });
  }
  const wrap = (target: Pick<PGlite, "query">): Sql => ({ query: (text, params) => target.query(text, params) as never });
  // Statement names are dropped: PGlite plans each query, there is no connection to prepare on.
  return {
    pglite,
    ...wrap(pglite),
    prepared: (_name, text, params) => pglite.query(text, params) as never,
    transaction: (fn) => pglite.transaction((tx) => fn(wrap(tx))),
    transactionFrom: (first, params, fn) =>
      pglite.transaction(async (tx) => {
        const tsx = wrap(tx);
        return fn(await tsx.query(first, [...params]), tsx);
      }),
    openSession: pgliteSessionOpener(pglite),
    close: () => pglite.close(),
  };
}
