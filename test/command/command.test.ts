// CommandService against the real Postgres primary: acceptance in one transaction, idempotency
// keys (draft-ietf-httpapi-idempotency-key-header-06), validation.
//
//   scripts/infra.sh up && node --import tsx --test test/command/command.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { create, fromBinary } from "@bufbuild/protobuf";
import type { Metadata } from "@grpc/grpc-js";
import pg from "pg";
import { CommandService, CommandState, CreateEntityRequestSchema, GetCommandRequestSchema } from "../../gen/umw/v1/command_pb.js";
import { CommandSchema } from "../../gen/umw/v1/envelope_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { createClient, type MeshClient } from "../../runtime/client.js";
import { EVENT_TYPES } from "../../runtime/cloudevents.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { rootLogger } from "../../runtime/logger.js";
import { MeshServer } from "../../runtime/server.js";
import { connectPostgres, databaseOnPool, type Database } from "../../runtime/sql.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { topicNames } from "../../runtime/topics.js";
import { createCommandService, type CommandServiceImpl } from "../../services/command/command-service.js";
import { keyLockId, parseIdempotencyKey } from "../../services/command/idempotency.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { closedPort, freshDatabase, type TestDatabase } from "../relay/fixture.js";
import { RESOURCES } from "./resources.js";

const log = rootLogger("silent");
const TOPIC = topicNames({ topicPrefix: "test." }).commands;


type Client = MeshClient<typeof CommandService>;

function expectRpc(code: Code, reason: string, check?: (error: RpcError) => void) {
  return (error: unknown) => {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    assert.equal(Code[error.code], Code[code], `${error.reason}: ${error.message}`);
    assert.equal(error.reason, reason, error.message);
    check?.(error);
    return true;
  };
}

/** A CallContext for calling handlers directly (to see the headers an error carries). */
function fakeContext(headers: Record<string, string>, peer: string | undefined = "cli"): CallContext & { readonly sent: Record<string, string> } {
  const sent: Record<string, string> = {};
  return { requestId: randomUUID(), deadline: undefined, peer, headers, signal: new AbortController().signal, log, setHeader: (key, value) => (sent[key] = value), sent };
}

describe("CommandService writes", () => {
  let database: TestDatabase;
  let db: Database;
  let impl: CommandServiceImpl;
  let server: MeshServer;
  let certs: TestCerts;
  let cli: Client;
  let edge: Client;

  before(async () => {
    database = await freshDatabase();
    db = await connectPostgres({ url: database.url, role: "primary", log, max: 10 });
    impl = createCommandService({ db, resources: RESOURCES, topics: { commands: TOPIC }, log, idempotencySweepMs: 0, listen: false });
    certs = testCerts(["command", "cli", "edge"]);
    server = new MeshServer({ name: "command", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("command")), log });
    server.addService(CommandService, impl.handlers);
    const port = await server.start();
    cli = createClient(CommandService, `127.0.0.1:${port}`, clientCredentials(certs.identity("cli")));
    edge = createClient(CommandService, `127.0.0.1:${port}`, clientCredentials(certs.identity("edge")));
  });

  after(async () => {
    cli?.close();
    edge?.close();
    await server?.stop();
    await impl?.close();
    await db?.close();
    certs?.remove();
    await database?.drop();
  });

  const count = async (table: string, where = "true", params: unknown[] = []) =>
    Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE ${where}`, params)).rows[0]!.n);

  test("50 identical creates at once with one key: one command, one outbox row; the rest replay or get IN_USE", async (t) => {
    const key = `k-${randomUUID()}`;
    const request = { tenant: "acme", type: "todo", id: "todo-1", data: { title: "buy milk", tags: ["a", "b"] } };
    const headersSeen: Metadata[] = [];
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => cli.createEntity(request, { headers: { "idempotency-key": key }, onHeaders: (h) => headersSeen.push(h) })),
    );
    const ok = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<Client["createEntity"]>>>).value);
    const failed = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason as RpcError);
    assert.ok(ok.length >= 1, "at least one request is accepted");
    const ids = new Set(ok.map((response) => response.receipt?.commandId));
    assert.equal(ids.size, 1, "every answer names the same command");
    for (const error of failed) expectRpc(Code.ABORTED, "IDEMPOTENCY_KEY_IN_USE")(error);
    assert.equal(ok.length + failed.length, 50);
    t.diagnostic(`${ok.length} accepted or replayed, ${failed.length} IDEMPOTENCY_KEY_IN_USE`);

    const [commandId] = [...ids] as [string];
    assert.equal(await count("umw_commands"), 1);
    assert.equal(await count("umw_outbox"), 1);
    assert.equal(await count("umw_idempotency_keys"), 1);
    const replays = headersSeen.filter((h) => h.get("idempotent-replayed")[0] === "true").length;
    assert.equal(replays, ok.length - 1, "every answer but the first is a replay");

    const receipt = ok[0]!.receipt!;
    assert.equal(receipt.state, CommandState.ACCEPTED);
    assert.equal(receipt.entityId, "todo-1");
    assert.equal(receipt.statusUrl, `/v1/tenants/acme/commands/${commandId}`);

    // A sequential retry after completion replays the same answer, with the replay marker.
    let retryHeaders: Metadata | undefined;
    const retry = await cli.createEntity(request, { headers: { "idempotency-key": key }, onHeaders: (h) => (retryHeaders = h) });
    assert.equal(retry.receipt?.commandId, commandId);
    assert.equal(retryHeaders?.get("idempotent-replayed")[0], "true");
    assert.equal(retryHeaders?.get("x-http-status")[0], "202");
    assert.equal(retryHeaders?.get("location")[0], receipt.statusUrl);
    assert.ok(Number.isFinite(Date.parse(String(retryHeaders?.get("idempotency-key-expires")[0]))));
    assert.equal(await count("umw_commands"), 1);

    // The same key as a structured-field String is the same key.
    const quoted = await cli.createEntity(request, { headers: { "idempotency-key": `"${key}"` } });
    assert.equal(quoted.receipt?.commandId, commandId);

    // The command row and its outbox message.
    const command = (await db.query<{ state: string; principal: string; action: string; entity_id: string }>("SELECT * FROM umw_commands")).rows[0]!;
    assert.deepEqual({ state: command.state, principal: command.principal, action: command.action, entity_id: command.entity_id }, { state: "accepted", principal: "cli", action: "create", entity_id: "todo-1" });
    const row = (await db.query<{ id: string; topic: string; aggregatetype: string; aggregateid: string; type: string; payload: Buffer; headers: Record<string, string> }>("SELECT * FROM umw_outbox")).rows[0]!;
    assert.equal(row.id, commandId);
    assert.equal(row.topic, TOPIC);
    assert.equal(row.aggregatetype, "todo");
    assert.equal(row.aggregateid, "acme/todo/todo-1");
    assert.equal(row.type, EVENT_TYPES.createEntity);
    assert.equal(row.headers["umw-key"], "acme/todo/todo-1");
    assert.equal(row.headers.ce_id, commandId);
    assert.equal(row.headers.ce_type, EVENT_TYPES.createEntity);
    assert.equal(row.headers.ce_subject, "acme/todo/todo-1");
    const message = fromBinary(CommandSchema, row.payload);
    assert.equal(message.context?.id, commandId);
    assert.equal(message.tenant, "acme");
    assert.equal(message.principal, "cli");
    assert.equal(message.idempotencyKey, key);
    assert.equal(message.action.case, "create");
    assert.deepEqual(message.action.value, create(CreateEntityRequestSchema, request));
  });

  test("a duplicate while the first is still being accepted gets IN_USE (409) at once", async () => {
    const key = randomUUID();
    const holder = await db.openSession();
    try {
      // What an accepting transaction holds until it commits.
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock($1::bigint)", [keyLockId("acme", "cli", key)]);
      const started = Date.now();
      await assert.rejects(
        impl.handlers.createEntity(create(CreateEntityRequestSchema, { tenant: "acme", type: "todo", id: "busy", data: { title: "x" } }), fakeContext({ "idempotency-key": key })),
        expectRpc(Code.ABORTED, "IDEMPOTENCY_KEY_IN_USE", (error) => assert.equal(error.headers["retry-after"], "1")),
      );
      assert.ok(Date.now() - started < 1_000, "answered without waiting for the other transaction");
    } finally {
      await holder.query("ROLLBACK");
      await holder.release();
    }
    const accepted = await cli.createEntity({ tenant: "acme", type: "todo", id: "busy", data: { title: "x" } }, { headers: { "idempotency-key": key } });
    assert.equal(accepted.receipt!.state, CommandState.ACCEPTED);
  });

  test("a key committed after the statement's snapshot is read again, never accepted twice", async () => {
    const key = randomUUID();
    const other = await db.openSession();
    try {
      // Another writer's key row, not yet committed (and not holding the advisory lock).
      await other.query("BEGIN");
      await other.query(
        "INSERT INTO umw_idempotency_keys (tenant, principal, key, fingerprint, command_id, response, expires_at) VALUES ('acme', 'cli', $1, 'another-fingerprint', $2, '\\x', now() + interval '1 hour')",
        [key, randomUUID()],
      );
      const pending = impl.handlers.createEntity(create(CreateEntityRequestSchema, { tenant: "acme", type: "todo", id: "race", data: { title: "x" } }), fakeContext({ "idempotency-key": key }));
      await sleep(200); // the insert now waits on the other writer's row
      await other.query("COMMIT");
      await assert.rejects(pending, expectRpc(Code.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED"));
    } finally {
      await other.release();
    }
    assert.equal(await count("umw_commands", "entity_id = 'race'"), 0);
    assert.equal(await count("umw_outbox", "aggregateid = 'acme/todo/race'"), 0);
  });

  test("create without an id gets a generated one; a replay keeps it", async () => {
    const key = randomUUID();
    const first = await cli.createEntity({ tenant: "acme", type: "todo", data: { title: "x" } }, { headers: { "idempotency-key": key } });
    assert.match(first.receipt!.entityId, /^[0-9a-f-]{36}$/);
    const again = await cli.createEntity({ tenant: "acme", type: "todo", data: { title: "x" } }, { headers: { "idempotency-key": key } });
    assert.equal(again.receipt!.entityId, first.receipt!.entityId);
    assert.equal(again.receipt!.commandId, first.receipt!.commandId);
  });

  test("the same key with another payload, method or target is refused with 422", async () => {
    const key = randomUUID();
    await cli.createEntity({ tenant: "acme", type: "todo", id: "r1", data: { title: "one" } }, { headers: { "idempotency-key": key } });
    await assert.rejects(
      cli.createEntity({ tenant: "acme", type: "todo", id: "r1", data: { title: "two" } }, { headers: { "idempotency-key": key } }),
      expectRpc(Code.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED"),
    );
    await assert.rejects(
      cli.updateEntity({ tenant: "acme", type: "todo", id: "r1", data: { title: "one" } }, { headers: { "idempotency-key": key } }),
      expectRpc(Code.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED"),
    );
    // The error carries x-http-status: 422 for the edge.
    const ctx = fakeContext({ "idempotency-key": key });
    await assert.rejects(
      impl.handlers.createEntity(create(CreateEntityRequestSchema, { tenant: "acme", type: "todo", id: "r2", data: { title: "one" } }), ctx),
      expectRpc(Code.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED", (error) => assert.equal(error.headers["x-http-status"], "422")),
    );
    // Key order inside the payload does not matter: the fingerprint is over canonical JSON.
    const key2 = randomUUID();
    const a = await cli.createEntity({ tenant: "acme", type: "todo", id: "r3", data: { title: "t", done: true } }, { headers: { "idempotency-key": key2 } });
    const b = await cli.createEntity({ tenant: "acme", type: "todo", id: "r3", data: { done: true, title: "t" } }, { headers: { "idempotency-key": key2 } });
    assert.equal(a.receipt!.commandId, b.receipt!.commandId);
  });

  test("a write without a key, or with a malformed one, is refused", async () => {
    await assert.rejects(cli.createEntity({ tenant: "acme", type: "todo", data: { title: "x" } }), expectRpc(Code.INVALID_ARGUMENT, "IDEMPOTENCY_KEY_MISSING"));
    await assert.rejects(cli.deleteEntity({ tenant: "acme", type: "todo", id: "x" }, { headers: { "idempotency-key": "" } }), expectRpc(Code.INVALID_ARGUMENT, "IDEMPOTENCY_KEY_MISSING"));
    await assert.rejects(cli.deleteEntity({ tenant: "acme", type: "todo", id: "x" }, { headers: { "idempotency-key": "x".repeat(256) } }), expectRpc(Code.INVALID_ARGUMENT, "IDEMPOTENCY_KEY_INVALID"));
    await assert.rejects(cli.deleteEntity({ tenant: "acme", type: "todo", id: "x" }, { headers: { "idempotency-key": '"open' } }), expectRpc(Code.INVALID_ARGUMENT, "IDEMPOTENCY_KEY_INVALID"));
    assert.equal(parseIdempotencyKey('"a \\"quoted\\" key"'), 'a "quoted" key');
    assert.equal(parseIdempotencyKey("8e03978e-40d5-43e8-bc93-6894a57f9324"), "8e03978e-40d5-43e8-bc93-6894a57f9324");
    assert.equal(parseIdempotencyKey("x".repeat(255)).length, 255);
  });

  test("keys are scoped per tenant and principal", async () => {
    const key = randomUUID();
    const data = { title: "scoped" };
    const asCli = await cli.createEntity({ tenant: "acme", type: "todo", id: "s1", data }, { headers: { "idempotency-key": key } });
    // The edge asserts the authenticated principal: another principal, another scope.
    const alice = await edge.createEntity({ tenant: "acme", type: "todo", id: "s1", data }, { headers: { "idempotency-key": key, "x-umw-principal": "alice", "x-umw-tenant": "acme" } });
    const bob = await edge.createEntity({ tenant: "acme", type: "todo", id: "s1", data }, { headers: { "idempotency-key": key, "x-umw-principal": "bob", "x-umw-tenant": "acme" } });
    const aliceAgain = await edge.createEntity({ tenant: "acme", type: "todo", id: "s1", data }, { headers: { "idempotency-key": key, "x-umw-principal": "alice", "x-umw-tenant": "acme" } });
    // Another tenant, another scope.
    const otherTenant = await cli.createEntity({ tenant: "globex", type: "todo", id: "s1", data }, { headers: { "idempotency-key": key } });
    // A peer that is not trusted to assert a principal stays itself.
    const spoofed = await cli.createEntity({ tenant: "acme", type: "todo", id: "s1", data }, { headers: { "idempotency-key": key, "x-umw-principal": "alice" } });
    const ids = [asCli, alice, bob, otherTenant].map((r) => r.receipt!.commandId);
    assert.equal(new Set(ids).size, 4, "each scope gets its own command");
    assert.equal(aliceAgain.receipt!.commandId, alice.receipt!.commandId);
    assert.equal(spoofed.receipt!.commandId, asCli.receipt!.commandId);
    const principals = (await db.query<{ principal: string }>("SELECT principal FROM umw_commands WHERE entity_id = 's1' ORDER BY principal")).rows.map((r) => r.principal);
    assert.deepEqual(principals, ["alice", "bob", "cli", "cli"]);
  });

  test("payloads are validated against the type's JSON Schema, listing the field paths", async () => {
    const headers = { "idempotency-key": randomUUID() };
    await assert.rejects(
      cli.createEntity({ tenant: "acme", type: "todo", id: "v1", data: { done: "yes", tags: ["ok", 3], owner: {}, extra: 1 } }, { headers }),
      expectRpc(Code.INVALID_ARGUMENT, "SCHEMA_VIOLATION", (error) => {
        const fields = error.metadata.fields!.split(",").sort();
        assert.deepEqual(fields, ["data.done", "data.extra", "data.owner.name", "data.tags[1]", "data.title"]);
        for (const field of fields) assert.ok(error.message.includes(field), `${field} named in: ${error.message}`);
      }),
    );
    // A patch is a merge patch: required fields may be absent and null removes a field.
    const patched = await cli.patchEntity({ tenant: "acme", type: "todo", id: "v1", data: { done: true, tags: null } }, { headers: { "idempotency-key": randomUUID() } });
    assert.equal(patched.receipt!.state, CommandState.ACCEPTED);
    await assert.rejects(
      cli.patchEntity({ tenant: "acme", type: "todo", id: "v1", data: { done: 1 } }, { headers: { "idempotency-key": randomUUID() } }),
      expectRpc(Code.INVALID_ARGUMENT, "SCHEMA_VIOLATION", (error) => assert.equal(error.metadata.fields, "data.done")),
    );
    // An update replaces the whole payload: required fields are required.
    await assert.rejects(
      cli.updateEntity({ tenant: "acme", type: "todo", id: "v1", data: { done: true } }, { headers: { "idempotency-key": randomUUID() } }),
      expectRpc(Code.INVALID_ARGUMENT, "SCHEMA_VIOLATION", (error) => assert.equal(error.metadata.fields, "data.title")),
    );
    assert.equal(await count("umw_commands", "entity_id = 'v1'"), 1, "only the valid patch was accepted");
  });

  test("unknown type, malformed names and versions are refused before anything is written", async () => {
    const before = await count("umw_commands");
    const headers = () => ({ "idempotency-key": randomUUID() });
    await assert.rejects(cli.createEntity({ tenant: "acme", type: "nope", data: {} }, { headers: headers() }), expectRpc(Code.NOT_FOUND, "UNKNOWN_RESOURCE_TYPE"));
    await assert.rejects(cli.createEntity({ tenant: "acme", type: "todo", id: "bad id!", data: { title: "x" } }, { headers: headers() }), expectRpc(Code.INVALID_ARGUMENT, "INVALID_ID"));
    await assert.rejects(cli.updateEntity({ tenant: "acme", type: "todo", id: "", data: { title: "x" } }, { headers: headers() }), expectRpc(Code.INVALID_ARGUMENT, "INVALID_ID"));
    await assert.rejects(cli.deleteEntity({ tenant: "ac/me", type: "todo", id: "a" }, { headers: headers() }), expectRpc(Code.INVALID_ARGUMENT, "INVALID_TENANT"));
    await assert.rejects(cli.deleteEntity({ tenant: "acme", type: "To Do", id: "a" }, { headers: headers() }), expectRpc(Code.INVALID_ARGUMENT, "INVALID_TYPE"));
    await assert.rejects(cli.deleteEntity({ tenant: "acme", type: "todo", id: "a", expectedVersion: -1n }, { headers: headers() }), expectRpc(Code.INVALID_ARGUMENT, "INVALID_EXPECTED_VERSION"));
    assert.equal(await count("umw_commands"), before);
  });

  test("update, patch and delete are accepted as commands with their action", async () => {
    const h = () => ({ headers: { "idempotency-key": randomUUID() } });
    // The entity as the processor left it (none runs here): expected_version is checked against it at accept.
    await db.query("INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ('acme', 'todo', 'u1', 3, '{\"title\":\"old\"}')");
    const update = await cli.updateEntity({ tenant: "acme", type: "todo", id: "u1", data: { title: "new" }, expectedVersion: 3n }, h());
    const patch = await cli.patchEntity({ tenant: "acme", type: "todo", id: "u1", data: { done: true } }, h());
    const remove = await cli.deleteEntity({ tenant: "acme", type: "todo", id: "u1", expectedVersion: 3n }, h());
    const rows = (await db.query<{ id: string; action: string; payload: Buffer; type: string }>(
      "SELECT c.id::text AS id, c.action, o.payload, o.type FROM umw_commands c JOIN umw_outbox o ON o.id = c.id WHERE c.entity_id = 'u1' ORDER BY o.seq",
    )).rows;
    assert.deepEqual(rows.map((r) => [r.id, r.action, r.type]), [
      [update.receipt!.commandId, "update", EVENT_TYPES.updateEntity],
      [patch.receipt!.commandId, "patch", EVENT_TYPES.patchEntity],
      [remove.receipt!.commandId, "delete", EVENT_TYPES.deleteEntity],
    ]);
    const deleted = fromBinary(CommandSchema, rows[2]!.payload);
    assert.equal(deleted.action.case, "delete");
    assert.equal(deleted.action.case === "delete" && deleted.action.value.expectedVersion, 3n);
  });

  test("expired keys no longer replay and are swept", async () => {
    const shortLived = createCommandService({ db, resources: RESOURCES, topics: { commands: TOPIC }, log, idempotencyTtlMs: 300, idempotencySweepMs: 0, listen: false });
    const call = (key: string, id: string) =>
      shortLived.handlers.createEntity(create(CreateEntityRequestSchema, { tenant: "exp", type: "todo", id, data: { title: "x" } }), fakeContext({ "idempotency-key": key }));
    const first = await call("expiring", "e1");
    const replay = await call("expiring", "e1");
    assert.equal(replay.receipt!.commandId, first.receipt!.commandId);
    await sleep(400);
    // Expired but not yet swept: the key is free again.
    const fresh = await call("expiring", "e1");
    assert.notEqual(fresh.receipt!.commandId, first.receipt!.commandId);
    await call("expiring-2", "e2");
    await sleep(400);
    assert.equal(await count("umw_idempotency_keys", "tenant = 'exp'"), 2);
    const swept = await shortLived.sweepExpiredKeys();
    assert.ok(swept >= 2, `swept ${swept}`);
    assert.equal(await count("umw_idempotency_keys", "tenant = 'exp'"), 0);
    assert.equal(await count("umw_idempotency_keys", "tenant = 'acme'") > 0, true, "live keys are kept");
    await shortLived.close();
  });

  test("the primary unreachable: UNAVAILABLE, so the caller retries with the same key", async () => {
    const port = await closedPort();
    const pool = new pg.Pool({ connectionString: `postgres://umw:umw@127.0.0.1:${port}/none`, connectionTimeoutMillis: 1_000 });
    const down: Database = databaseOnPool(pool);
    const offline = createCommandService({ db: down, resources: RESOURCES, topics: { commands: TOPIC }, log, idempotencySweepMs: 0, listen: false });
    await assert.rejects(
      offline.handlers.createEntity(create(CreateEntityRequestSchema, { tenant: "acme", type: "todo", data: { title: "x" } }), fakeContext({ "idempotency-key": "k" })),
      expectRpc(Code.UNAVAILABLE, "DATABASE_UNAVAILABLE", (error) => assert.equal(error.headers["retry-after"], "1")),
    );
    await assert.rejects(
      offline.handlers.getCommand(create(GetCommandRequestSchema, { tenant: "acme", commandId: randomUUID() }), fakeContext({})),
      expectRpc(Code.UNAVAILABLE, "DATABASE_UNAVAILABLE"),
    );
    await offline.close();
    await down.close();
  });

  test("the accepted answer carries 202, location and the key's expiry", async () => {
    const ctx = fakeContext({ "idempotency-key": randomUUID() });
    const before = Date.now();
    const response = await impl.handlers.createEntity(create(CreateEntityRequestSchema, { tenant: "acme", type: "todo", id: "h1", data: { title: "x" } }), ctx);
    assert.equal(ctx.sent["x-http-status"], "202");
    assert.equal(ctx.sent.location, `/v1/tenants/acme/commands/${response.receipt!.commandId}`);
    assert.equal(ctx.sent["idempotent-replayed"], undefined);
    const expires = Date.parse(ctx.sent["idempotency-key-expires"]!);
    assert.ok(Math.abs(expires - (before + 86_400_000)) < 5_000, ctx.sent["idempotency-key-expires"]);
  });
});
