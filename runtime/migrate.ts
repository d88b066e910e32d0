import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";

export const MIGRATIONS_DIR = new URL("../migrations/", import.meta.url).pathname;

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Migrations are files `NNNN_name.sql`, applied in version order, each in its own transaction. */
export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d{4}_[\w-]+\.sql$/.test(file))
    .sort()
    .map((file) => ({ version: Number(file.slice(0, 4)), name: file.slice(5, -4), sql: readFileSync(join(dir, file), "utf8") }));
}

/**
 * The grants to the per-service roles (runtime/pg-roles.ts), run after the migrations on every
 * `migrate` (idempotent; roles that do not exist are skipped).
 */
export function readGrants(dir = MIGRATIONS_DIR): string {
  return readFileSync(join(dir, "grants.sql"), "utf8");
}

/**
 * Applies the migrations not yet recorded in `umw_schema_migrations`, then the grants. An
 * advisory lock keeps two processes starting at once from applying the same migration twice.
 */
export async function migrate(connectionString: string, migrations = readMigrations(), grants = readGrants()): Promise<Migration[]> {
  const client = new pg.Client({ connectionString });
  // The server going away mid-migration fails the statement in flight; without a listener the
  // client's 'error' event would end the process instead.
  client.on("error", () => undefined);
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock(hashtext('umw_schema_migrations'))");
    await client.query(`CREATE TABLE IF NOT EXISTS umw_schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number }>("SELECT version FROM umw_schema_migrations");
    const applied = new Set(rows.map((row) => row.version));
    const pending = migrations.filter((migration) => !applied.has(migration.version));
    for (const migration of pending) {
      await client.query("BEGIN");
      try {
        await client.query(migration.sql);
        await client.query("INSERT INTO umw_schema_migrations (version, name) VALUES ($1, $2)", [migration.version, migration.name]);
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${migration.version}_${migration.name} failed: ${(error as Error).message}`);
      }
    }
    await client.query(grants);
    return pending;
  } finally {
    await client.query("SELECT pg_advisory_unlock(hashtext('umw_schema_migrations'))").catch(() => undefined);
    await client.end();
  }
}
