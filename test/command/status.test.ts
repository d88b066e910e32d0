// GetCommand and WatchCommand against the real Postgres primary: the test plays the processor
// (UPDATE umw_commands + pg_notify('umw_command', id)).
//
//   scripts/infra.sh up && node --import tsx --test test/command/status.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { create, createRegistry, toJson } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { CommandService, CommandState, WatchCommandRequestSchema, type CommandStatus } from "../../gen/umw/v1/command_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { createClient, type MeshClient } from "../../runtime/client.js";
import { Code, errorInfoOf, RpcError } from "../../runtime/errors.js";
import { rootLogger } from "../../runtime/logger.js";
import { COMMAND_CHANNEL } from "../../runtime/outbox.js";
import { MeshServer } from "../../runtime/server.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { createCommandService, type CommandServiceImpl } from "../../services/command/command-service.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { freshDatabase, type TestDatabase } from "../relay/fixture.js";
import { waitFor } from "../support/wait.js";
import { RESOURCES } from "./resources.js";

const log = rootLogger("silent");

function expectRpc(code: Code, reason: string) {
  return (error: unknown) => {
    assert.ok(error instanceof RpcError, String(error));
    assert.equal(Code[error.code], Code[code], error.message);
    assert.equal(error.reason, reason);
    return true;
  };
}

describe("command status", () => {
  let database: TestDatabase;
  let db: Database;
  let impl: CommandServiceImpl;
  let server: MeshServer;
  let certs: TestCerts;
  let client: MeshClient<typeof CommandService>;

  before(async () => {
    database = await freshDatabase();
    db = await connectPostgres({ url: database.url, role: "primary", log, max: 10 });
    // Polling only every 30 s: a watcher that sees a change within a second was woken by NOTIFY.
    impl = createCommandService({ db, resources: RESOURCES, topics: { commands: "t.cmd" }, log, idempotencySweepMs: 0, watchPollMs: 30_000 });
    impl.start();
    certs = testCerts(["command", "cli"]);
    server = new MeshServer({ name: "command", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("command")), log, drainTimeoutMs: 2_000 });
    server.addService(CommandService, impl.handlers);
    client = createClient(CommandService, `127.0.0.1:${await server.start()}`, clientCredentials(certs.identity("cli")));
    // The shared LISTEN connection is up once its backend shows in pg_stat_activity.
    await waitFor(
      async () => (await db.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query = $1", [`LISTEN ${COMMAND_CHANNEL}`])).rows[0]!.n === "1",
      { what: "the command feed to LISTEN", timeoutMs: 5_000 },
    );
  });

  after(async () => {
    client?.close();
    await server?.stop();
    await impl?.close();
    await db?.close();
    certs?.remove();
    await database?.drop();
  });

  const accept = async (tenant = "acme", id = randomUUID()) =>
    (await client.createEntity({ tenant, type: "todo", id, data: { title: "t" } }, { headers: { "idempotency-key": randomUUID() } })).receipt!;

  /** What the processor does when it settles a command. */
  const settle = async (commandId: string, state: string, version: number | null, error: object | null = null) => {
    await db.transaction(async (tx) => {
      await tx.query("UPDATE umw_commands SET state = $2, version = $3, error = $4, update_time = now() WHERE id = $1", [commandId, state, version, error === null ? null : JSON.stringify(error)]);
      await tx.query("SELECT pg_notify($1, $2)", [COMMAND_CHANNEL, commandId]);
    });
  };

  test("GetCommand returns the status; another tenant's command is NOT_FOUND", async () => {
    const receipt = await accept();
    const { command } = await client.getCommand({ tenant: "acme", commandId: receipt.commandId });
    assert.equal(command?.commandId, receipt.commandId);
    assert.equal(command?.state, CommandState.ACCEPTED);
    assert.equal(command?.tenant, "acme");
    assert.equal(command?.type, "todo");
    assert.equal(command?.entityId, receipt.entityId);
    assert.ok(command?.createTime && command.updateTime);
    await assert.rejects(client.getCommand({ tenant: "globex", commandId: receipt.commandId }), expectRpc(Code.NOT_FOUND, "COMMAND_NOT_FOUND"));
    await assert.rejects(client.getCommand({ tenant: "acme", commandId: randomUUID() }), expectRpc(Code.NOT_FOUND, "COMMAND_NOT_FOUND"));
    await assert.rejects(client.getCommand({ tenant: "acme", commandId: "not-a-uuid" }), expectRpc(Code.INVALID_ARGUMENT, "INVALID_COMMAND_ID"));

    await settle(receipt.commandId, "applied", 3);
    const applied = await client.getCommand({ tenant: "acme", commandId: receipt.commandId });
    assert.equal(applied.command?.state, CommandState.APPLIED);
    assert.equal(applied.command?.version, 3n);
  });

  test("WatchCommand streams accepted, then the terminal state as soon as the processor NOTIFYs", async () => {
    const receipt = await accept();
    const seen: CommandStatus[] = [];
    let settledAt = 0;
    let appliedAt = 0;
    const stream = (async () => {
      for await (const message of client.watchCommand({ tenant: "acme", commandId: receipt.commandId }, { timeoutMs: 20_000 })) {
        seen.push(message.command!);
        if (message.command!.state === CommandState.APPLIED) appliedAt = Date.now();
      }
    })();
    await waitFor(() => seen.length === 1, { what: "the first status", timeoutMs: 5_000 });
    assert.equal(seen[0]!.state, CommandState.ACCEPTED);
    settledAt = Date.now();
    await settle(receipt.commandId, "applied", 1);
    await stream; // ends by itself at the terminal state
    assert.deepEqual(seen.map((s) => CommandState[s.state]), ["ACCEPTED", "APPLIED"]);
    assert.equal(seen[1]!.version, 1n);
    assert.ok(appliedAt - settledAt < 1_000, `woken by NOTIFY, not by polling (${appliedAt - settledAt} ms)`);
  });

  test("WatchCommand reports a rejection with its error, and every intermediate change", async () => {
    const receipt = await accept();
    const seen: CommandStatus[] = [];
    const stream = (async () => {
      for await (const message of client.watchCommand({ tenant: "acme", commandId: receipt.commandId }, { timeoutMs: 20_000 })) seen.push(message.command!);
    })();
    await waitFor(() => seen.length === 1, { what: "the first status", timeoutMs: 5_000 });
    // An intermediate change that is not terminal (e.g. a retry recorded by the processor).
    await db.query("UPDATE umw_commands SET update_time = now() + interval '1 second' WHERE id = $1", [receipt.commandId]);
    await db.query("SELECT pg_notify($1, $2)", [COMMAND_CHANNEL, receipt.commandId]);
    await waitFor(() => seen.length === 2, { what: "the intermediate status", timeoutMs: 5_000 });
    // The processor stores google.rpc.Status JSON (ErrorInfo in details).
    const rejection = new RpcError(Code.FAILED_PRECONDITION, "VERSION_CONFLICT", "expected version 3, found 4", { expected: "3", actual: "4" });
    await settle(receipt.commandId, "rejected", null, toJson(StatusSchema, rejection.toStatus(), { registry: createRegistry(ErrorInfoSchema) }) as object);
    await stream;
    assert.deepEqual(seen.map((s) => CommandState[s.state]), ["ACCEPTED", "ACCEPTED", "REJECTED"]);
    const error = seen[2]!.error!;
    assert.equal(error.code, Code.FAILED_PRECONDITION);
    assert.equal(error.message, "expected version 3, found 4");
    assert.equal(errorInfoOf(error)?.reason, "VERSION_CONFLICT");
    assert.deepEqual(errorInfoOf(error)?.metadata, { expected: "3", actual: "4" });
  });

  test("WatchCommand on a settled command answers once and ends; unknown and foreign commands are NOT_FOUND", async () => {
    const receipt = await accept();
    await settle(receipt.commandId, "failed", null, { code: Code.INTERNAL, reason: "DEAD_LETTER", message: "gave up" });
    const seen: CommandStatus[] = [];
    for await (const message of client.watchCommand({ tenant: "acme", commandId: receipt.commandId })) seen.push(message.command!);
    assert.deepEqual(seen.map((s) => CommandState[s.state]), ["FAILED"]);
    // The simple shape {code, reason, message} is read too.
    assert.equal(seen[0]!.error?.code, Code.INTERNAL);
    assert.equal(errorInfoOf(seen[0]!.error!)?.reason, "DEAD_LETTER");
    const drain = async (tenant: string, commandId: string) => {
      for await (const _ of client.watchCommand({ tenant, commandId })) assert.fail("no message expected");
    };
    await assert.rejects(drain("globex", receipt.commandId), expectRpc(Code.NOT_FOUND, "COMMAND_NOT_FOUND"));
    await assert.rejects(drain("acme", randomUUID()), expectRpc(Code.NOT_FOUND, "COMMAND_NOT_FOUND"));
  });

  test("many watchers of many commands share the one LISTEN connection", async () => {
    const receipts = await Promise.all(Array.from({ length: 10 }, () => accept()));
    const ends = new Map<string, CommandState>();
    const streams = receipts.flatMap((receipt) =>
      [1, 2].map(async () => {
        for await (const message of client.watchCommand({ tenant: "acme", commandId: receipt.commandId }, { timeoutMs: 20_000 })) {
          if (message.command!.state !== CommandState.ACCEPTED) ends.set(receipt.commandId, message.command!.state);
        }
      }),
    );
    await sleep(300);
    const listeners = await db.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'");
    assert.equal(listeners.rows[0]!.n, "1");
    await Promise.all(receipts.map((receipt, i) => settle(receipt.commandId, i % 2 ? "applied" : "rejected", i % 2 ? 1 : null)));
    await Promise.all(streams);
    assert.equal(ends.size, 10);
  });

  test("a cancelled watch ends cleanly; without LISTEN, polling still delivers", async () => {
    const receipt = await accept();
    const cancel = new AbortController();
    const seen: CommandStatus[] = [];
    const stream = (async () => {
      for await (const message of client.watchCommand({ tenant: "acme", commandId: receipt.commandId }, { signal: cancel.signal })) seen.push(message.command!);
    })();
    await waitFor(() => seen.length === 1, { what: "the first status", timeoutMs: 5_000 });
    cancel.abort();
    await assert.rejects(stream, (error: RpcError) => error.code === Code.CANCELLED);

    // Handler-level, polling only (no LISTEN connection at all), 100 ms poll.
    const polling = createCommandService({ db, resources: RESOURCES, topics: { commands: "t.cmd" }, log, idempotencySweepMs: 0, watchPollMs: 100, listen: false });
    const done = new AbortController();
    const ctx: CallContext = { requestId: "r", deadline: undefined, peer: "cli", headers: {}, signal: done.signal, log, setHeader: () => undefined };
    const states: string[] = [];
    const watching = (async () => {
      for await (const message of polling.handlers.watchCommand(create(WatchCommandRequestSchema, { tenant: "acme", commandId: receipt.commandId }), ctx)) {
        states.push(CommandState[message.command!.state!]!);
      }
    })();
    await waitFor(() => states.length === 1, { what: "the first status", timeoutMs: 5_000 });
    await db.query("UPDATE umw_commands SET state = 'applied', version = 2, update_time = now() WHERE id = $1", [receipt.commandId]);
    await watching;
    assert.deepEqual(states, ["ACCEPTED", "APPLIED"]);

    // Aborting the call's signal (cancel or shutdown) ends a watch without an error.
    const other = await accept();
    const abort = new AbortController();
    const ctx2: CallContext = { ...ctx, signal: abort.signal };
    const count = { n: 0 };
    const ended = (async () => {
      for await (const _ of polling.handlers.watchCommand(create(WatchCommandRequestSchema, { tenant: "acme", commandId: other.commandId }), ctx2)) count.n++;
    })();
    await waitFor(() => count.n === 1, { what: "the first status", timeoutMs: 5_000 });
    abort.abort();
    await ended;
    await polling.close();
  });
});
