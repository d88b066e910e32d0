// The processor's batches against the real Postgres primary and Kafka broker: a partition's waiting
// commands are applied in one transaction, and that must not change what each command does.
// Every test publishes its commands in ONE produce call to a one-partition topic of its own, then
// starts a processor on it, so the first fetch hands them over as one batch.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create, toBinary, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { CommandSchema, type Command } from "../../gen/umw/v1/envelope_pb.js";
import type { EventBus, OutgoingMessage } from "../../runtime/bus.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { entityKey } from "../../runtime/entity.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { topicNames } from "../../runtime/topics.js";
import { createProcessor, type Outcome, type Processor } from "../../services/processor/processor.js";
import { writePathTopics } from "../../services/processor/settings.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra } from "../support/env.js";
import { dropKafkaPrefix, runPrefix } from "./support.js";
import { waitFor } from "../support/wait.js";

const log = rootLogger("silent");
const TENANT = "acme";
const TYPE = "note";

type Action = NonNullable<MessageInitShape<typeof CommandSchema>["action"]>;
type Built = { id: string; command: Command; message: OutgoingMessage };
type Seen = { outcome: Outcome; messageId: string; offset: bigint };

describe("processor batches on Postgres and Kafka", { timeout: 90_000 }, () => {
  let testDb: TestDatabase;
  let database: Database;
  let bus: KafkaBus;
  let prefix: string;
  let runs = 0;
  const processors: Processor[] = [];

  before(async () => {
    prefix = runPrefix();
    testDb = await createTestDatabase();
    database = await connectPostgres({ url: testDb.url, role: "primary", log });
    bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: infra.kafkaBrokers, clientId: "umw-test-batch", log });
    await bus.connect();
  });

  after(async () => {
    for (const processor of processors) await processor.stop();
    await bus?.close();
    await database?.close();
    await testDb?.drop();
    if (prefix) await dropKafkaPrefix(prefix);
  });

  /** A topic set of its own (one partition) and a processor started on it once `publish` is done. */
  async function lane() {
    const topics = topicNames({ topicPrefix: `${prefix}${++runs}.` });
    await bus.ensureTopics(writePathTopics(topics, 1));
    const seen: Seen[] = [];
    const start = async (onBus: EventBus = bus) => {
      const processor = createProcessor({
        db: database,
        bus: onBus,
        topics,
        log,
        group: `${prefix}${runs}.umw-processor`,
        maxAttempts: 2,
        backoff: { initialMs: 10, maxMs: 20 },
        onOutcome: (outcome, message) => seen.push({ outcome, messageId: message.headers.ce_id ?? "", offset: message.offset }),
      });
      processors.push(processor);
      await processor.start();
      return processor;
    };
    const publish = (messages: readonly Built[]) => bus.publish(topics.commands, messages.map((built) => built.message));
    return { topics, seen, start, publish };
  }

  /** What the command service does (status row), and the Kafka message the relay would send. */
  async function accepted(action: Action): Promise<Built> {
    const id = randomUUID();
    const value = action.value as { tenant: string; type: string; id: string };
    const key = entityKey(value.tenant, value.type, value.id);
    const context = newEventContext({ id, source: "/umw/command", type: EVENT_TYPES.createEntity, subject: key });
    const command = create(CommandSchema, { context, tenant: value.tenant, principal: "alice", idempotencyKey: `key-${id}`, action });
    await database.query(`INSERT INTO umw_commands (id, tenant, principal, type, entity_id, action, state) VALUES ($1, $2, 'alice', $3, $4, $5, 'accepted')`, [
      id,
      value.tenant,
      value.type,
      value.id,
      action.case,
    ]);
    return { id, command, message: { key, value: toBinary(CommandSchema, command), headers: { ...cloudEventHeaders(context), "umw-outbox-id": id } } };
  }

  const createOf = (id: string, data: JsonObject) => accepted({ case: "create", value: { tenant: TENANT, type: TYPE, id, data } });
  const patchOf = (id: string, data: JsonObject) => accepted({ case: "patch", value: { tenant: TENANT, type: TYPE, id, data } });

  async function commandRows(ids: readonly string[]) {
    const { rows } = await database.query<{ id: string; state: string; version: string | null; update_time: string }>(
      "SELECT id::text AS id, state, version::text AS version, update_time::text AS update_time FROM umw_commands WHERE id = ANY($1::uuid[])",
      [ids],
    );
    return new Map(rows.map((row) => [row.id, row]));
  }

  async function allSettled(ids: readonly string[]) {
    return waitFor(
      async () => {
        const rows = await commandRows(ids);
        return [...rows.values()].every((row) => row.state !== "accepted") && rows.size === ids.length ? rows : undefined;
      },
      { what: `${ids.length} commands to settle`, timeoutMs: 30_000 },
    );
  }

  async function entity(id: string) {
    const { rows } = await database.query<{ version: string; data: JsonObject }>("SELECT version::text AS version, data FROM umw_entities WHERE tenant = $1 AND type = $2 AND id = $3", [
      TENANT,
      TYPE,
      id,
    ]);
    return rows[0];
  }

  test("one entity's commands in one batch apply in order, in fewer transactions than commands", async () => {
    const { seen, start, publish } = await lane();
    const a = `o-${randomUUID().slice(0, 8)}`;
    const b = `o-${randomUUID().slice(0, 8)}`;
    const batch: Built[] = [await createOf(a, { n: 0 }), await createOf(b, { n: 0 })];
    for (let n = 1; n <= 20; n++) batch.push(await patchOf(a, { n }), ...(n % 5 === 0 ? [await patchOf(b, { n })] : []));
    await publish(batch);
    await start();

    const rows = await allSettled(batch.map((built) => built.id));
    assert.deepEqual(new Set([...rows.values()].map((row) => row.state)), new Set(["applied"]));
    assert.deepEqual(await entity(a), { version: "21", data: { n: 20 } });
    assert.deepEqual(await entity(b), { version: "5", data: { n: 20 } });
    // Each command got the version its place in the partition gives it.
    const aCommands = batch.filter((built) => (built.command.action.value as { id: string }).id === a);
    assert.deepEqual(aCommands.map((built) => rows.get(built.id)!.version), aCommands.map((_, i) => String(i + 1)));
    // now() is the transaction's start: commands sharing it were applied in one transaction.
    const transactions = new Set([...rows.values()].map((row) => row.update_time)).size;
    assert.ok(transactions < batch.length, `${batch.length} commands in ${transactions} transactions`);
    assert.equal(seen.filter((each) => each.outcome.kind === "applied").length, batch.length);
    const { rows: events } = await database.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_outbox WHERE aggregateid = $1 AND topic LIKE '%entity-events%'", [
      entityKey(TENANT, TYPE, a),
    ]);
    assert.equal(events[0]!.n, 21);
  });

  test("creates and updates applied together give each command what one-by-one would: versions, refusals, re-creation, event order", async () => {
    const { seen, start, publish } = await lane();
    const name = (what: string) => `m-${what}-${randomUUID().slice(0, 8)}`;
    const [existing, updated, stale, recreated, fresh, twice, missing] = ["existing", "updated", "stale", "recreated", "fresh", "twice", "missing"].map(name) as [string, string, string, string, string, string, string];
    const updateOf = (id: string, data: JsonObject, expectedVersion: bigint) => accepted({ case: "update", value: { tenant: TENANT, type: TYPE, id, data, expectedVersion } });
    const first = [await createOf(existing, { v: 1 }), await createOf(updated, { v: 1 }), await createOf(stale, { v: 1 }), await createOf(recreated, { v: 1 })];
    first.push(await patchOf(recreated, { v: 2 }), await accepted({ case: "delete", value: { tenant: TENANT, type: TYPE, id: recreated, expectedVersion: 0n } }));
    await publish(first);
    await start();
    await allSettled(first.map((built) => built.id));

    const second = [
      await createOf(fresh, { v: 1 }),
      await createOf(existing, { v: "again" }),
      await updateOf(updated, { v: 2 }, 1n),
      await updateOf(stale, { v: 2 }, 7n),
      await updateOf(missing, { v: 1 }, 0n),
      await createOf(recreated, { v: "back" }),
      await createOf(twice, { v: 1 }),
      await updateOf(twice, { v: 2 }, 1n),
    ];
    await publish(second);
    const rows = await allSettled(second.map((built) => built.id));
    const state = second.map((built) => [rows.get(built.id)!.state, rows.get(built.id)!.version]);
    assert.deepEqual(state, [
      ["applied", "1"],
      ["rejected", null],
      ["applied", "2"],
      ["rejected", null],
      ["rejected", null],
      ["applied", "4"], // created 1, patched 2, deleted 3: the tombstone's next version
      ["applied", "1"],
      ["applied", "2"],
    ]);
    // One produce request, one fetched batch, one transaction: what the batch path (applyCommonAtOnce) did.
    assert.equal(new Set(second.map((built) => rows.get(built.id)!.update_time)).size, 1, "the second batch applied in one transaction");
    const reasons = seen.filter((each) => each.outcome.kind === "rejected").map((each) => (each.outcome as { error: { reason: string } }).error.reason);
    assert.deepEqual(reasons, ["ENTITY_ALREADY_EXISTS", "VERSION_CONFLICT", "ENTITY_NOT_FOUND"]);
    assert.deepEqual(await entity(existing), { version: "1", data: { v: 1 } });
    assert.deepEqual(await entity(stale), { version: "1", data: { v: 1 } });
    assert.deepEqual(await entity(recreated), { version: "4", data: { v: "back" } });
    assert.deepEqual(await entity(twice), { version: "2", data: { v: 2 } });
    // The events are in the outbox in message order (the relay publishes in that order).
    const { rows: events } = await database.query<{ aggregateid: string }>(
      "SELECT aggregateid FROM umw_outbox WHERE topic LIKE '%entity-events%' AND aggregateid = ANY($1::text[]) ORDER BY seq",
      [[fresh, updated, recreated, twice].map((id) => entityKey(TENANT, TYPE, id))],
    );
    const applied = second.filter((built) => rows.get(built.id)!.state === "applied").map((built) => (built.command.action.value as { id: string }).id);
    const firstEvents = [recreated, recreated, recreated, updated].map((id) => entityKey(TENANT, TYPE, id)); // from the first batch
    const later = events.map((row) => row.aggregateid);
    for (const key of firstEvents) later.splice(later.indexOf(key), 1);
    assert.deepEqual(later, applied.map((id) => entityKey(TENANT, TYPE, id)));
  });

  test("an unconditional update behind a patch or a delete of the same entity in one batch waits its turn", async () => {
    const { start, publish } = await lane();
    const [patched, deleted] = ["patched", "deleted"].map((what) => `o-${what}-${randomUUID().slice(0, 8)}`) as [string, string];
    const updateOf = (id: string, data: JsonObject) => accepted({ case: "update", value: { tenant: TENANT, type: TYPE, id, data, expectedVersion: 0n } });
    const first = [await createOf(patched, { v: 1 }), await createOf(deleted, { v: 1 })];
    await publish(first);
    await start();
    await allSettled(first.map((built) => built.id));

    const patch = await accepted({ case: "patch", value: { tenant: TENANT, type: TYPE, id: patched, data: { p: true }, expectedVersion: 1n } });
    const remove = await accepted({ case: "delete", value: { tenant: TENANT, type: TYPE, id: deleted, expectedVersion: 1n } });
    const second = [patch, await updateOf(patched, { v: 2 }), remove, await updateOf(deleted, { v: 2 })];
    await publish(second);
    const rows = await allSettled(second.map((built) => built.id));
    assert.deepEqual(
      second.map((built) => [rows.get(built.id)!.state, rows.get(built.id)!.version]),
      [
        ["applied", "2"],
        ["applied", "3"],
        ["applied", "2"],
        ["rejected", null],
      ],
      "each entity's commands applied in message order",
    );
    assert.deepEqual(await entity(patched), { version: "3", data: { v: 2 } });
  });

  test("a command delivered several times inside one batch is applied once", async () => {
    const { seen, start, publish } = await lane();
    const x = `d-${randomUUID().slice(0, 8)}`;
    const y = `d-${randomUUID().slice(0, 8)}`;
    const createX = await createOf(x, { title: "x" });
    const patchX = await patchOf(x, { more: true });
    const createY = await createOf(y, { title: "y" });
    await publish([createX, createX, patchX, createX, createY, patchX]);
    await start();

    const rows = await allSettled([createX.id, patchX.id, createY.id]);
    assert.deepEqual([createX, patchX, createY].map((built) => [rows.get(built.id)!.state, rows.get(built.id)!.version]), [
      ["applied", "1"],
      ["applied", "2"],
      ["applied", "1"],
    ]);
    await waitFor(() => (seen.length === 6 ? true : undefined), { what: "all six deliveries handled" });
    assert.deepEqual(
      seen.map((each) => [each.messageId, each.outcome.kind]),
      [
        [createX.id, "applied"],
        [createX.id, "duplicate"],
        [patchX.id, "applied"],
        [createX.id, "duplicate"],
        [createY.id, "applied"],
        [patchX.id, "duplicate"],
      ],
    );
    assert.deepEqual(await entity(x), { version: "2", data: { title: "x", more: true } });
    const { rows: inbox } = await database.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_inbox WHERE message_id = ANY($1)", [[createX.id, patchX.id, createY.id]]);
    assert.equal(inbox[0]!.n, 3);
    const { rows: events } = await database.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_outbox WHERE aggregateid = ANY($1) AND topic LIKE '%entity-events%'", [
      [entityKey(TENANT, TYPE, x), entityKey(TENANT, TYPE, y)],
    ]);
    assert.equal(events[0]!.n, 3);
  });

  test("poison messages inside a batch are dead-lettered; the others are applied once, in order", async () => {
    const { seen, start, publish } = await lane();
    const p = `p-${randomUUID().slice(0, 8)}`;
    const q = `p-${randomUUID().slice(0, 8)}`;
    const refused = `p-${randomUUID().slice(0, 8)}`;
    const createP = await createOf(p, { step: 1 });
    const garbageId = randomUUID();
    const garbage: Built = {
      id: garbageId,
      command: create(CommandSchema, {}),
      message: { key: entityKey(TENANT, TYPE, p), value: Buffer.from("\u00ff\u00fe not protobuf"), headers: { ce_id: garbageId, ce_type: EVENT_TYPES.createEntity } },
    };
    // Postgres refuses a NUL in jsonb: the batch's transaction fails, the batch goes one by one.
    const nul = await createOf(refused, { title: "nul \u0000 byte" });
    const patchP = await patchOf(p, { step: 2 });
    const createQ = await createOf(q, { title: "after" });
    await publish([createP, garbage, nul, patchP, createQ]);
    await start();

    const rows = await allSettled([createP.id, nul.id, patchP.id, createQ.id]);
    assert.deepEqual([createP, nul, patchP, createQ].map((built) => [rows.get(built.id)!.state, rows.get(built.id)!.version]), [
      ["applied", "1"],
      ["failed", null],
      ["applied", "2"],
      ["applied", "1"],
    ]);
    await waitFor(() => (seen.length === 5 ? true : undefined), { what: "all five messages handled" });
    assert.deepEqual(
      seen.map((each) => [each.messageId, each.outcome.kind === "dead-lettered" ? `dead-lettered ${each.outcome.reason}` : each.outcome.kind]),
      [
        [createP.id, "applied"],
        [garbageId, "dead-lettered UNDECODABLE"],
        [nul.id, "dead-lettered PERMANENT_ERROR"],
        [patchP.id, "applied"],
        [createQ.id, "applied"],
      ],
    );
    assert.deepEqual(await entity(p), { version: "2", data: { step: 2 } });
    assert.equal(await entity(refused), undefined);
  });

  test("a crash after the batch's commit, before its offsets are committed: redelivered, applied once", async () => {
    const { seen, start, publish } = await lane();
    const c = `k-${randomUUID().slice(0, 8)}`;
    const batch = [await createOf(c, { n: 0 }), await patchOf(c, { n: 1 }), await patchOf(c, { n: 2 })];
    await publish(batch);
    // The bus as a process that dies right after the processor's transaction: the handler's
    // promise rejects, so the offsets are never resolved and Kafka hands the batch over again.
    let crashes = 0;
    const crashingBus: EventBus = {
      ensureTopics: (specs) => bus.ensureTopics(specs),
      publish: (topic, messages) => bus.publish(topic, messages),
      subscribe: (options) => bus.subscribe(options),
      subscribeBatch: (options) =>
        bus.subscribeBatch({
          ...options,
          async handleBatch(delivered) {
            await options.handleBatch(delivered);
            if (crashes++ === 0) throw new Error("crashed between the transaction's commit and the offset commit");
          },
        }),
      close: async () => undefined,
    };
    await start(crashingBus);

    await waitFor(() => (seen.filter((each) => each.outcome.kind === "duplicate").length === 3 ? true : undefined), {
      what: "the batch redelivered and found in the inbox",
      timeoutMs: 30_000,
    });
    assert.ok(crashes >= 2);
    assert.deepEqual(
      seen.map((each) => each.outcome.kind),
      ["applied", "applied", "applied", "duplicate", "duplicate", "duplicate"],
    );
    const rows = await allSettled(batch.map((built) => built.id));
    assert.deepEqual(batch.map((built) => rows.get(built.id)!.version), ["1", "2", "3"]);
    assert.deepEqual(await entity(c), { version: "3", data: { n: 2 } });
    const { rows: events } = await database.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_outbox WHERE aggregateid = $1 AND topic LIKE '%entity-events%'", [
      entityKey(TENANT, TYPE, c),
    ]);
    assert.equal(events[0]!.n, 3);
  });
});
