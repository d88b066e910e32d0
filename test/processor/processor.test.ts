// The processor against the real Postgres primary and Kafka broker (scripts/infra.sh up):
// commands are published straight to the commands topic, as the outbox relay would.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { ChangeKind, CommandSchema, DomainEventSchema, type Command } from "../../gen/umw/v1/envelope_pb.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { entityKey } from "../../runtime/entity.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import { resourceSchema } from "../../runtime/resources.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { topicNames } from "../../runtime/topics.js";
import { loadConfig, type Config } from "../../runtime/config.js";
import { createProcessor, type Outcome, type Processor } from "../../services/processor/processor.js";
import { writePathTopics } from "../../services/processor/settings.js";
import { runDlq } from "../../cli/dlq.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra } from "../support/env.js";
import { dropKafkaPrefix, flakyDatabase, runPrefix, type FlakyDatabase } from "./support.js";
import { waitFor } from "../support/wait.js";

/** Small, so that a patch can grow an entity past it. */
const PAYLOAD_MAX_BYTES = 4_096;
const log = rootLogger("silent");
const TENANT = "acme";
const MAX_ATTEMPTS = 3;

type Action = MessageInitShape<typeof CommandSchema>["action"];

interface CommandRow {
  state: string;
  version: string | null;
  error: { code: number; message: string; details: { "@type": string; reason: string; metadata?: Record<string, string> }[] } | null;
}

describe("processor on Postgres and Kafka", { timeout: 60_000 }, () => {
  let testDb: TestDatabase;
  let database: Database;
  let flaky: FlakyDatabase;
  let bus: KafkaBus;
  let processor: Processor;
  let prefix: string;
  let topics: ReturnType<typeof topicNames>;
  let config: Config;
  const outcomes: { outcome: Outcome; messageId: string; offset: bigint; partition: number }[] = [];

  before(async () => {
    prefix = runPrefix();
    topics = topicNames({ topicPrefix: prefix });
    config = { ...loadConfig({ ...process.env, UMW_CONFIG: "" }), topicPrefix: prefix };
    testDb = await createTestDatabase();
    database = await connectPostgres({ url: testDb.url, role: "primary", log });
    flaky = flakyDatabase(database);
    bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: infra.kafkaBrokers, clientId: "umw-test-processor", log });
    await bus.connect();
    await bus.ensureTopics(writePathTopics(topics, 3));
    processor = createProcessor({
      db: flaky,
      bus,
      topics,
      log,
      group: `${prefix}umw-processor`,
      maxAttempts: MAX_ATTEMPTS,
      backoff: { initialMs: 10, maxMs: 40 },
      payloadMaxBytes: PAYLOAD_MAX_BYTES,
      resources: {
        note: resourceSchema.parse({ schema: { type: "object", required: ["title"], properties: { title: { type: "string" } } } }),
      },
      onOutcome: (outcome, message) => outcomes.push({ outcome, messageId: message.headers.ce_id ?? "", offset: message.offset, partition: message.partition }),
    });
    await processor.start();
  });

  after(async () => {
    await processor?.stop();
    await bus?.close();
    await database?.close();
    await testDb?.drop();
    if (prefix) await dropKafkaPrefix(prefix);
  });

  const TYPE_OF: Record<string, string> = {
    create: EVENT_TYPES.createEntity,
    update: EVENT_TYPES.updateEntity,
    patch: EVENT_TYPES.patchEntity,
    delete: EVENT_TYPES.deleteEntity,
  };

  /** What the command service does (status row) and then the relay (the Kafka message). */
  function command(action: NonNullable<Action>, options: { traceparent?: string } = {}): { id: string; command: Command; key: string; headers: Record<string, string> } {
    const id = randomUUID();
    const value = action.value as { tenant: string; type: string; id: string };
    const key = entityKey(value.tenant, value.type, value.id);
    const context = newEventContext({ id, source: "/umw/command", type: TYPE_OF[action.case!]!, subject: key, traceparent: options.traceparent });
    const message = create(CommandSchema, { context, tenant: value.tenant, principal: "alice", idempotencyKey: `key-${id}`, action });
    return { id, command: message, key, headers: { ...cloudEventHeaders(context), "umw-outbox-id": id } };
  }

  async function accept(built: ReturnType<typeof command>): Promise<void> {
    const value = built.command.action.value!;
    await database.query(
      `INSERT INTO umw_commands (id, tenant, principal, type, entity_id, action, state) VALUES ($1, $2, 'alice', $3, $4, $5, 'accepted')`,
      [built.id, value.tenant, value.type, value.id, built.command.action.case],
    );
  }

  async function publish(built: ReturnType<typeof command>, times = 1): Promise<void> {
    const message = { key: built.key, value: toBinary(CommandSchema, built.command), headers: built.headers };
    for (let i = 0; i < times; i++) await bus.publish(topics.commands, [message]);
  }

  async function send(action: NonNullable<Action>, options: { traceparent?: string } = {}): Promise<string> {
    const built = command(action, options);
    await accept(built);
    await publish(built);
    return built.id;
  }

  async function settled(commandId: string): Promise<CommandRow> {
    return waitFor(async () => {
      const { rows } = await database.query<CommandRow>("SELECT state, version::text AS version, error FROM umw_commands WHERE id = $1", [commandId]);
      return rows[0] && rows[0].state !== "accepted" ? rows[0] : undefined;
    }, { what: `command ${commandId} to settle` });
  }

  async function entity(type: string, id: string): Promise<{ version: string; data: JsonObject } | undefined> {
    const { rows } = await database.query<{ version: string; data: JsonObject }>(
      "SELECT version::text AS version, data FROM umw_entities WHERE tenant = $1 AND type = $2 AND id = $3",
      [TENANT, type, id],
    );
    return rows[0];
  }

  async function eventsFor(type: string, id: string) {
    const { rows } = await database.query<{ topic: string; payload: Buffer; headers: Record<string, string>; type: string; aggregateid: string; id: string }>(
      "SELECT id::text AS id, topic, payload, headers, type, aggregateid FROM umw_outbox WHERE aggregateid = $1 ORDER BY seq",
      [entityKey(TENANT, type, id)],
    );
    return rows.map((row) => ({ ...row, event: fromBinary(DomainEventSchema, row.payload) }));
  }

  const reasonOf = (row: CommandRow) => row.error?.details.find((detail) => detail["@type"].endsWith("google.rpc.ErrorInfo"))?.reason;

  test("create, update, merge patch, masked patch and delete are applied with versions and domain events", async () => {
    const id = `n-${randomUUID().slice(0, 8)}`;
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const created = await send({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "first", tags: ["a"], meta: { color: "red", size: 1 } } } }, { traceparent });
    assert.deepEqual(await settled(created), { state: "applied", version: "1", error: null });
    assert.deepEqual(await entity("note", id), { version: "1", data: { title: "first", tags: ["a"], meta: { color: "red", size: 1 } } });

    const updated = await send({ case: "update", value: { tenant: TENANT, type: "note", id, data: { title: "second", meta: { color: "blue", size: 2 } }, expectedVersion: 1n } });
    assert.equal((await settled(updated)).version, "2");
    assert.deepEqual((await entity("note", id))?.data, { title: "second", meta: { color: "blue", size: 2 } });

    // RFC 7396: objects merge, null removes, arrays replace.
    const merged = await send({ case: "patch", value: { tenant: TENANT, type: "note", id, data: { meta: { size: null, shape: "round" }, tags: ["x", "y"] } } });
    assert.equal((await settled(merged)).version, "3");
    assert.deepEqual((await entity("note", id))?.data, { title: "second", meta: { color: "blue", shape: "round" }, tags: ["x", "y"] });

    // With update_mask only the named paths change; a named path absent from the patch is removed.
    const masked = await send({
      case: "patch",
      value: {
        tenant: TENANT,
        type: "note",
        id,
        data: { title: "third", meta: { color: "green", shape: "ignored" }, tags: ["ignored"] },
        updateMask: create(FieldMaskSchema, { paths: ["title", "meta.color", "meta.absent", "tags.none"] }),
        expectedVersion: 3n,
      },
    });
    assert.equal((await settled(masked)).version, "4");
    assert.deepEqual((await entity("note", id))?.data, { title: "third", meta: { color: "green", shape: "round" }, tags: ["x", "y"] });

    const deleted = await send({ case: "delete", value: { tenant: TENANT, type: "note", id, expectedVersion: 4n } });
    assert.deepEqual(await settled(deleted), { state: "applied", version: "5", error: null });
    assert.equal(await entity("note", id), undefined);

    // Recreated, it continues above the deletion's version: caches and streams fence on versions.
    const recreated = await send({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "again" } } });
    assert.deepEqual(await settled(recreated), { state: "applied", version: "6", error: null });
    assert.deepEqual(await entity("note", id), { version: "6", data: { title: "again" } });

    const events = await eventsFor("note", id);
    assert.deepEqual(
      events.map(({ event }) => [event.kind, event.entity?.version, event.commandId]),
      [
        [ChangeKind.CREATED, 1n, created],
        [ChangeKind.UPDATED, 2n, updated],
        [ChangeKind.UPDATED, 3n, merged],
        [ChangeKind.UPDATED, 4n, masked],
        [ChangeKind.DELETED, 5n, deleted],
        [ChangeKind.CREATED, 6n, recreated],
      ],
    );
    for (const row of events) {
      assert.equal(row.topic, topics.entityEvents);
      assert.equal(row.headers["umw-key"], entityKey(TENANT, "note", id));
      assert.equal(row.headers.ce_id, row.id);
      assert.equal(row.headers.ce_type, row.type);
      assert.equal(row.event.context?.id, row.id);
    }
    assert.deepEqual(
      events.map((row) => row.type),
      [EVENT_TYPES.entityCreated, EVENT_TYPES.entityUpdated, EVENT_TYPES.entityUpdated, EVENT_TYPES.entityUpdated, EVENT_TYPES.entityDeleted, EVENT_TYPES.entityCreated],
    );
    // Full new state in each event; none for the deletion; the trace carries over from the command.
    assert.deepEqual(events[3]!.event.entity?.data, { title: "third", meta: { color: "green", shape: "round" }, tags: ["x", "y"] });
    assert.equal(events[4]!.event.entity?.data, undefined);
    assert.equal(events[0]!.event.context?.traceparent, traceparent);
    assert.equal(events[0]!.headers.traceparent, traceparent);
  });

  test("a message delivered twice is applied once", async () => {
    const id = `d-${randomUUID().slice(0, 8)}`;
    const createCmd = command({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "once" } } });
    await accept(createCmd);
    await publish(createCmd, 2);
    const updateCmd = command({ case: "update", value: { tenant: TENANT, type: "note", id, data: { title: "twice?" } } });
    await accept(updateCmd);
    await publish(updateCmd, 3);
    await waitFor(
      () => (outcomes.filter((o) => o.outcome.kind === "duplicate" && [createCmd.id, updateCmd.id].includes(o.messageId)).length === 3 ? true : undefined),
      { what: "the duplicates to be seen" },
    );
    assert.equal((await settled(updateCmd.id)).version, "2");
    assert.deepEqual(await entity("note", id), { version: "2", data: { title: "twice?" } });
    const { rows } = await database.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_inbox WHERE message_id = ANY($1)", [[createCmd.id, updateCmd.id]]);
    assert.equal(rows[0]!.n, 2);
    assert.equal((await eventsFor("note", id)).length, 2);
  });

  test("refusals are recorded as rejections, with google.rpc.Status and ErrorInfo, and change nothing", async () => {
    const id = `c-${randomUUID().slice(0, 8)}`;
    await settled(await send({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "v1" } } }));

    const conflict = await settled(await send({ case: "update", value: { tenant: TENANT, type: "note", id, data: { title: "lost" }, expectedVersion: 7n } }));
    assert.equal(conflict.state, "rejected");
    assert.equal(conflict.version, null);
    assert.equal(conflict.error?.code, 9); // FAILED_PRECONDITION
    assert.equal(reasonOf(conflict), "VERSION_CONFLICT");
    assert.deepEqual(conflict.error?.details[0]?.metadata, { tenant: TENANT, type: "note", id, expected_version: "7", current_version: "1" });

    const exists = await settled(await send({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "again" } } }));
    assert.deepEqual([exists.state, exists.error?.code, reasonOf(exists)], ["rejected", 6, "ENTITY_ALREADY_EXISTS"]);

    const missing = await settled(await send({ case: "patch", value: { tenant: TENANT, type: "note", id: "nope", data: { title: "x" } } }));
    assert.deepEqual([missing.state, missing.error?.code, reasonOf(missing)], ["rejected", 5, "ENTITY_NOT_FOUND"]);

    // The merged result must still match the type's JSON Schema (title is required).
    const invalid = await settled(await send({ case: "patch", value: { tenant: TENANT, type: "note", id, data: { title: null } } }));
    assert.deepEqual([invalid.state, invalid.error?.code, reasonOf(invalid)], ["rejected", 3, "SCHEMA_VIOLATION"]);

    // Each patch alone is within the payload limit; what it would make of the entity is not.
    const grown = await settled(await send({ case: "patch", value: { tenant: TENANT, type: "note", id, data: { blob: "x".repeat(PAYLOAD_MAX_BYTES) } } }));
    assert.deepEqual([grown.state, grown.error?.code, reasonOf(grown)], ["rejected", 3, "PAYLOAD_TOO_LARGE"]);

    assert.deepEqual(await entity("note", id), { version: "1", data: { title: "v1" } });
    assert.equal((await eventsFor("note", id)).length, 1);
  });

  test("a poison message goes to the DLQ with its error and the partition moves on", async () => {
    const id = `p-${randomUUID().slice(0, 8)}`;
    const key = entityKey(TENANT, "note", id);
    const poisonId = randomUUID();
    await bus.publish(topics.commands, [{ key, value: Buffer.from("\u00ff\u00fe garbage, not protobuf"), headers: { ce_id: poisonId, ce_type: EVENT_TYPES.createEntity, ce_subject: key } }]);
    // Same key, so same partition, right behind the poison message.
    const next = await send({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "after the poison" } } });
    assert.equal((await settled(next)).state, "applied");
    const poison = outcomes.find((o) => o.messageId === poisonId);
    assert.equal(poison?.outcome.kind, "dead-lettered");

    const lines: string[] = [];
    assert.equal(await runDlq(["list", "--json"], { config, out: (line) => lines.push(line), log }), 0);
    const letter = lines.map((line) => JSON.parse(line)).find((entry) => entry.id === poisonId);
    assert.ok(letter, `dead letter ${poisonId} listed: ${lines.join("\n")}`);
    assert.equal(letter.reason, "UNDECODABLE");
    assert.equal(letter.command, "create_entity");
    assert.equal(letter.subject, key);
    assert.match(letter.error, /not a umw\.v1\.Command/);
    assert.deepEqual(letter.original, { topic: topics.commands, partition: String(poison!.partition), offset: poison!.offset.toString() });
  });

  test("a value Postgres refuses is dead-lettered at once, without retries", async () => {
    const id = `z-${randomUUID().slice(0, 8)}`;
    const commandId = await send({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "nul \u0000 byte" } } });
    const row = await settled(commandId);
    assert.equal(row.state, "failed");
    // The command row is marked failed before the processor reports the outcome: wait for the report.
    const outcome = await waitFor(() => outcomes.find((o) => o.messageId === commandId)?.outcome, { what: "the dead-letter outcome" });
    assert.deepEqual(outcome && outcome.kind === "dead-lettered" ? [outcome.reason, outcome.attempts] : outcome, ["PERMANENT_ERROR", 1]);
  });

  test("transient failures are retried with backoff, then the command applies once", async () => {
    const id = `r-${randomUUID().slice(0, 8)}`;
    const before = flaky.injected;
    flaky.failNext(MAX_ATTEMPTS - 1, "40001"); // serialization_failure
    const commandId = await send({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "eventually" } } });
    assert.deepEqual(await settled(commandId), { state: "applied", version: "1", error: null });
    assert.equal(flaky.injected - before, MAX_ATTEMPTS - 1);
    const { rows } = await database.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_inbox WHERE message_id = $1", [commandId]);
    assert.equal(rows[0]!.n, 1);
    assert.equal((await eventsFor("note", id)).length, 1, "rolled-back attempts left no outbox rows");
  });

  test("after N failed attempts: DLQ, command failed; `umw dlq list` shows it and `umw dlq replay` applies it", async () => {
    const id = `f-${randomUUID().slice(0, 8)}`;
    flaky.failNext(MAX_ATTEMPTS, "08006"); // connection_failure, every attempt
    const commandId = await send({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "dead letter" } } });
    const failed = await settled(commandId);
    assert.equal(failed.state, "failed");
    assert.equal(reasonOf(failed), "COMMAND_DEAD_LETTERED");
    assert.equal(failed.error?.details[0]?.metadata?.attempts, String(MAX_ATTEMPTS));
    assert.doesNotMatch(failed.error?.message ?? "", /injected|08006/, "no internals in the client-visible error");
    assert.equal(await entity("note", id), undefined);
    // The dead letter is published after the row is marked failed.
    await waitFor(() => outcomes.some((o) => o.messageId === commandId && o.outcome.kind === "dead-lettered") || undefined, { what: "the dead letter to be published" });

    const lines: string[] = [];
    assert.equal(await runDlq(["list", "--limit", "10"], { config, out: (line) => lines.push(line), log }), 0);
    const table = lines.join("\n");
    assert.match(table, /^ID\s+COMMAND\s+TENANT\/SUBJECT\s+ERROR\s+ATTEMPTS\s+TIME/m);
    const row = table.split("\n").find((line) => line.startsWith(commandId));
    assert.ok(row, `the table lists ${commandId}:\n${table}`);
    assert.match(row, new RegExp(`create_entity\\s+acme/note/${id}\\s+RETRIES_EXHAUSTED: injected failure 08006\\s+${MAX_ATTEMPTS}\\s+\\d{4}-`));

    const json: string[] = [];
    await runDlq(["list", "--json"], { config, out: (line) => json.push(line), log });
    const letter = json.map((line) => JSON.parse(line)).find((entry) => entry.id === commandId);
    assert.equal(letter.attempts, MAX_ATTEMPTS);

    const replayed: string[] = [];
    assert.equal(await runDlq(["replay", commandId], { config, out: (line) => replayed.push(line), log }), 0);
    assert.match(replayed.join("\n"), new RegExp(`replayed ${commandId}`));
    await waitFor(async () => {
      const { rows } = await database.query<CommandRow>("SELECT state, version::text AS version FROM umw_commands WHERE id = $1", [commandId]);
      return rows[0]?.state === "applied" ? rows[0] : undefined;
    }, { what: "the replayed command to apply" });
    assert.deepEqual(await entity("note", id), { version: "1", data: { title: "dead letter" } });

    // The replay is the original message: its id is in the inbox now, a second replay is a duplicate.
    assert.equal(await runDlq(["replay", commandId], { config, out: () => undefined, log }), 0);
    await waitFor(() => (outcomes.some((o) => o.messageId === commandId && o.outcome.kind === "duplicate") ? true : undefined), { what: "the second replay to be skipped" });
    assert.equal((await entity("note", id))?.version, "1");
    assert.equal(await runDlq(["replay", randomUUID()], { config, out: () => undefined, err: () => undefined, log }), 1);
    assert.equal(await runDlq(["nonsense"], { config, out: () => undefined, err: () => undefined, log }), 2);
  });

  test("one partition is never processed concurrently, even if a bus delivered it so", async () => {
    // A second processor on its own wrapper (not subscribed): handle() is what any bus adapter calls.
    const counted = flakyDatabase(database);
    const direct = createProcessor({ db: counted, bus, topics, log });
    const messages = Array.from({ length: 4 }, () => {
      const built = command({ case: "create", value: { tenant: TENANT, type: "note", id: `s-${randomUUID().slice(0, 8)}`, data: { title: "serial" } } });
      return { topic: topics.commands, partition: 99, offset: 0n, key: built.key, value: toBinary(CommandSchema, built.command), headers: built.headers, timestamp: Date.now() };
    });
    const results = await Promise.all(messages.map((message) => direct.handle(message)));
    assert.deepEqual(results.map((result) => result.kind), ["applied", "applied", "applied", "applied"]);
    assert.equal(counted.maxConcurrent, 1);
    // Other partitions are not held up by it.
    const other = messages.map((message, i) => ({ ...message, partition: 100 + i, headers: { ...message.headers, ce_id: randomUUID() } }));
    const again = await Promise.all(other.map((message) => direct.handle(message)));
    assert.deepEqual(again.map((result) => result.kind), ["rejected", "rejected", "rejected", "rejected"]);
    assert.ok(counted.maxConcurrent > 1, "different partitions run side by side");
  });
});
