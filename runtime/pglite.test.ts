import { test } from "node:test";
import assert from "node:assert/strict";
import { openPglite } from "./pglite.js";
import { readMigrations } from "./migrate.js";

test("PGlite opens migrated and runs transactions that commit or roll back", async () => {
  const db = await openPglite();
  try {
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_schema_migrations");
    assert.equal(rows[0]?.n, readMigrations().length);
    await db.transaction(async (tx) => {
      await tx.query("INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ('t', 'todo', 'a', 1, '{}')");
    });
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query("INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ('t', 'todo', 'b', 1, '{}')");
        throw new Error("abort");
      }),
      /abort/,
    );
    const ids = (await db.query<{ id: string }>("SELECT id FROM umw_entities ORDER BY id")).rows.map((row) => row.id);
    assert.deepEqual(ids, ["a"]);
  } finally {
    await db.close();
  }
});
