import { test } from "node:test";
import assert from "node:assert/strict";
import { openPglite } from "./pglite.js";

// A session over PGlite is the one connection of the whole process: what it sets, every component gets.
test("a PGlite session's transaction keeps SET LOCAL to itself, commits, and rolls back on throw", async () => {
  const db = await openPglite();
  try {
    const session = await db.openSession();
    const setting = async () => (await db.query<{ synchronous_commit: string }>("SHOW synchronous_commit")).rows[0]!.synchronous_commit;
    assert.equal(await setting(), "on");

    const inside = await session.transaction(async (tx) => {
      await tx.query("SET LOCAL synchronous_commit = off");
      await tx.query("INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ('t', 'todo', 'a', 1, '{}')");
      return (await tx.query<{ synchronous_commit: string }>("SHOW synchronous_commit")).rows[0]!.synchronous_commit;
    });
    assert.equal(inside, "off");
    assert.equal(await setting(), "on", "the setting ended with the transaction");

    await assert.rejects(
      session.transaction(async (tx) => {
        await tx.query("INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ('t', 'todo', 'b', 1, '{}')");
        throw new Error("abort");
      }),
      /abort/,
    );
    const ids = (await db.query<{ id: string }>("SELECT id FROM umw_entities ORDER BY id")).rows.map((row) => row.id);
    assert.deepEqual(ids, ["a"]);

    await session.release();
    await assert.rejects(session.transaction(async () => undefined), /released/);
  } finally {
    await db.close();
  }
});
