// Group commit of accepts (services/command/group-commit.ts) against the real Postgres primary:
// concurrent unconditional writes share one statement and one commit, and each caller still gets
// exactly the answer it would get alone.
//
//   scripts/infra.sh up && node --import tsx --test test/command/group-commit.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { CreateEntityRequestSchema } from "../../gen/umw/v1/command_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { rootLogger } from "../../runtime/logger.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { topicNames } from "../../runtime/topics.js";
import { createCommandService, type CommandServiceImpl } from "../../services/command/command-service.js";
import { freshDatabase, type TestDatabase } from "../relay/fixture.js";
import { RESOURCES } from "./resources.js";

const log = rootLogger("silent");
const TOPIC = topicNames({ topicPrefix: "test." }).commands;

function context(key: string, requestId: string = randomUUID()): CallContext {
  return { requestId, deadline: undefined, peer: "cli", headers: { "idempotency-key": key }, signal: new AbortController().signal, log, setHeader: () => undefined };
}

describe("CommandService group commit", () => {
  let database: TestDatabase;
  let db: Database;
  let impl: CommandServiceImpl;
  /** Fails the group statement while > 0 (counted down per group). */
  let failGroups = 0;

  before(async () => {
    database = await freshDatabase();
    const inner = await connectPostgres({ url: database.url, role: "primary", log, max: 10 });
    db = {
      ...inner,
      query: (text, params) => inner.query(text, params),
      prepared(name, text, params) {
        if (name === "umw_accept_commands" && failGroups > 0) {
          failGroups--;
          return Promise.reject(Object.assign(new Error("injected failure of the group statement"), { code: "40001" }));
        }
        return inner.prepared(name, text, params);
      },
      transaction: (fn) => inner.transaction(fn),
      transactionFrom: (first, params, fn) => inner.transactionFrom(first, params, fn),
      openSession: () => inner.openSession(),
      close: () => inner.close(),
    };
    impl = createCommandService({ db, resources: RESOURCES, topics: { commands: TOPIC }, log, idempotencySweepMs: 0, listen: false, groupCommit: { maxInFlight: 1, maxGroup: 256 } });
  });

  after(async () => {
    await impl?.close();
    await db?.close();
    await database?.drop();
  });

  const createTodo = (id: string, title: string, ctx: CallContext) => impl.handlers.createEntity(create(CreateEntityRequestSchema, { tenant: "acme", type: "todo", id, data: { title } }), ctx);

  async function rowsOf(commandIds: readonly (string | undefined)[]) {
    const { rows } = await db.query<{ id: string; created: string; outbox: number; keys: number }>(
      `SELECT c.id::text AS id, c.create_time::text AS created,
              (SELECT count(*)::int FROM umw_outbox o WHERE o.id = c.id) AS outbox,
              (SELECT count(*)::int FROM umw_idempotency_keys k WHERE k.command_id = c.id) AS keys
         FROM umw_commands c WHERE c.id = ANY($1::uuid[])`,
      [commandIds],
    );
    return rows;
  }

  test("concurrent writes share commits; each gets its own command, key and outbox row", async () => {
    const receipts = await Promise.all(Array.from({ length: 60 }, (_, i) => createTodo(`g-${randomUUID()}`, `t${i}`, context(`k-${randomUUID()}`))));
    const ids = receipts.map((response) => response.receipt!.commandId);
    assert.equal(new Set(ids).size, 60);
    const rows = await rowsOf(ids);
    assert.equal(rows.length, 60);
    assert.ok(rows.every((row) => row.outbox === 1 && row.keys === 1));
    // now() is the transaction's start: rows that share it were committed together.
    const commits = new Set(rows.map((row) => row.created)).size;
    assert.ok(commits < 60, `60 accepts in ${commits} commits`);
  });

  test("one key twice in a burst is one command; a key reused with another payload is refused, the others are accepted", async () => {
    const used = `k-${randomUUID()}`;
    await createTodo("reused-target", "first", context(used));
    const twice = `k-${randomUUID()}`;
    const settled = await Promise.allSettled([
      ...Array.from({ length: 10 }, (_, i) => createTodo(`g-${randomUUID()}`, `n${i}`, context(`k-${randomUUID()}`))),
      createTodo("twice", "same", context(twice)),
      createTodo("twice", "same", context(twice)),
      createTodo("reused-target", "another payload", context(used)),
      ...Array.from({ length: 10 }, (_, i) => createTodo(`g-${randomUUID()}`, `m${i}`, context(`k-${randomUUID()}`))),
    ]);
    const others = [...settled.slice(0, 10), ...settled.slice(13)];
    assert.ok(others.every((outcome) => outcome.status === "fulfilled"), JSON.stringify(others.filter((outcome) => outcome.status === "rejected")));
    const reused = settled[12]!;
    assert.equal(reused.status, "rejected");
    assert.ok(reused.reason instanceof RpcError && reused.reason.reason === "IDEMPOTENCY_KEY_REUSED" && reused.reason.code === Code.FAILED_PRECONDITION);
    // The same key twice at once: one command; the other call replays it or is told the key is in use.
    const pair = settled.slice(10, 12);
    const accepted = new Set(pair.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value.receipt!.commandId] : [])));
    assert.equal(accepted.size, 1);
    for (const outcome of pair) {
      if (outcome.status === "rejected") assert.ok(outcome.reason instanceof RpcError && outcome.reason.reason === "IDEMPOTENCY_KEY_IN_USE", String(outcome.reason));
    }
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_commands WHERE entity_id = 'twice'");
    assert.equal(rows[0]!.n, 1);
  });

  test("one caller's failing row does not fail the others: the group is retried one by one", async () => {
    // jsonb refuses \u0000: this caller's outbox headers (they carry the request id) cannot be stored.
    // The first call goes alone (nothing in flight); the ones behind it, the bad one among them, form a group.
    const first = createTodo(`g-${randomUUID()}`, "first", context(`k-${randomUUID()}`));
    const badId = `g-${randomUUID()}`;
    const bad = createTodo(badId, "bad", context(`k-${randomUUID()}`, "bad\u0000request-id"));
    const good = Array.from({ length: 20 }, (_, i) => createTodo(`g-${randomUUID()}`, `ok${i}`, context(`k-${randomUUID()}`)));
    const [badOutcome, ...goodOutcomes] = await Promise.allSettled([bad, first, ...good]);
    assert.equal(badOutcome!.status, "rejected");
    assert.ok(goodOutcomes.every((outcome) => outcome.status === "fulfilled"));
    const ids = goodOutcomes.map((outcome) => (outcome as PromiseFulfilledResult<{ receipt: { commandId: string } }>).value.receipt.commandId);
    const rows = await rowsOf(ids);
    assert.equal(rows.length, 21);
    assert.ok(rows.every((row) => row.outbox === 1 && row.keys === 1));
    const { rows: badRows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_commands WHERE entity_id = $1", [badId]);
    assert.equal(badRows[0]!.n, 0, "nothing of the refused caller is stored");
  });

  test("a failed group statement: every caller is accepted on its own", async () => {
    failGroups = 1;
    const receipts = await Promise.all(Array.from({ length: 20 }, (_, i) => createTodo(`g-${randomUUID()}`, `f${i}`, context(`k-${randomUUID()}`))));
    assert.equal(failGroups, 0, "the group statement ran (and failed)");
    const rows = await rowsOf(receipts.map((response) => response.receipt!.commandId));
    assert.equal(rows.length, 20);
    assert.ok(rows.every((row) => row.outbox === 1 && row.keys === 1));
  });
});
