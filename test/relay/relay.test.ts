// The outbox relay against the real Postgres primary and the real Kafka broker.
//
//   scripts/infra.sh up && node --import tsx --test test/relay/relay.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { EventBus, IncomingMessage, Subscription } from "../../runtime/bus.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import { appendToOutbox } from "../../runtime/outbox.js";
import { connectPostgres } from "../../runtime/sql.js";
import { topicNames } from "../../runtime/topics.js";
import { createOutboxRelay, type OutboxRelay, type OutboxRelayOptions } from "../../services/relay/relay.js";
import { umwTopics } from "../../services/relay/index.js";
import type { DbSession } from "../../runtime/db-session.js";
import { sessionOpener } from "../../runtime/pg-session.js";
import { create, fromBinary } from "@bufbuild/protobuf";
import { CreateEntityRequestSchema } from "../../gen/umw/v1/command_pb.js";
import { CommandSchema } from "../../gen/umw/v1/envelope_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { createCommandService } from "../../services/command/command-service.js";
import { RESOURCES } from "../command/resources.js";
import { closedPort, deleteTopics, freshDatabase, infra, KAFKA_BROKERS, testTopicPrefix, type TestDatabase } from "./fixture.js";
import { waitFor } from "../support/wait.js";

const log = rootLogger("silent");

describe("outbox relay", () => {
  let database: TestDatabase;
  let db: Awaited<ReturnType<typeof connectPostgres>>;
  let bus: KafkaBus;
  let consumerBus: KafkaBus;
  let subscription: Subscription;
  const prefix = testTopicPrefix();
  const topics = topicNames({ topicPrefix: prefix });
  const specs = umwTopics({ topicPrefix: prefix }, 3);
  const received: IncomingMessage[] = [];
  const relays: OutboxRelay[] = [];

  const relay = (overrides: Partial<OutboxRelayOptions> = {}) => {
    const created = createOutboxRelay({
      db,
      bus,
      topics: specs,
      log,
      postgresLabel: "Postgres primary (test)",
      kafkaLabel: `Kafka at ${KAFKA_BROKERS.join(",")}`,
      pollMs: 200,
      lockRetryMs: 500,
      ...overrides,
    });
    relays.push(created);
    created.start();
    return created;
  };

  before(async () => {
    database = await freshDatabase();
    db = await connectPostgres({ url: database.url, role: "primary", log, max: 8 });
    bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: KAFKA_BROKERS, clientId: "umw-relay-test", log });
    await bus.connect();
    await bus.ensureTopics(specs);
    consumerBus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: KAFKA_BROKERS, clientId: "umw-relay-test-consumer", log });
    subscription = await consumerBus.subscribe({
      topics: [topics.commands, topics.entityEvents],
      group: `umw-relay-test-${randomUUID()}`,
      fromBeginning: true,
      handle: async (message) => void received.push(message),
    });
  });

  after(async () => {
    for (const each of relays) await each.kill().catch(() => undefined);
    await subscription?.stop();
    await consumerBus?.close();
    await bus?.close();
    await db?.close();
    await database?.drop();
    await deleteTopics(prefix).catch(() => undefined);
  });

  let counter = 0;
  /** Appends rows like the command service and processor do: one transaction, NOTIFY on commit. */
  const append = async (rows: { key: string; topic?: string }[]) => {
    const ids: string[] = [];
    await db.transaction(async (tx) => {
      for (const row of rows) {
        const id = randomUUID();
        ids.push(id);
        await appendToOutbox(tx, {
          id,
          aggregatetype: "todo",
          aggregateid: row.key,
          type: "dev.umw.test.v1",
          topic: row.topic ?? topics.commands,
          key: row.key,
          payload: Buffer.from(`payload-${counter++}`),
          headers: { ce_id: id, ce_type: "dev.umw.test.v1", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
        });
      }
    });
    return ids;
  };

  const leaderWithin = (each: OutboxRelay, ms = 10_000) => each.whenLeader(AbortSignal.timeout(ms));

  const unpublished = async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_outbox WHERE published_at IS NULL")).rows[0]!.n);
  const receivedIds = () => new Set(received.map((m) => m.headers["umw-outbox-id"]));
  const waitForDelivery = (ids: string[], timeoutMs = 20_000) =>
    waitFor(() => {
      const got = receivedIds();
      return ids.every((id) => got.has(id));
    }, { what: `${ids.length} messages on Kafka`, timeoutMs });

  test("publishes in seq order with key and headers, then marks the rows", { timeout: 45_000 }, async (t) => {
    const rows = Array.from({ length: 60 }, (_, i) => ({ key: `acme/todo/${i % 4}`, topic: i % 5 === 0 ? topics.entityEvents : topics.commands }));
    const ids = await append(rows);
    const leader = relay({ batchSize: 16, maxBatchBytes: 2_000 });
    await leaderWithin(leader);
    await waitForDelivery(ids);
    await waitFor(async () => (await unpublished()) === 0, { what: "rows marked published", timeoutMs: 5_000 });

    const seqOf = new Map((await db.query<{ id: string; seq: string }>("SELECT id::text AS id, seq::text AS seq FROM umw_outbox")).rows.map((r) => [r.id, BigInt(r.seq)]));
    const mine = received.filter((m) => seqOf.has(m.headers["umw-outbox-id"]!));
    assert.equal(mine.length, 60, "each row once (no failure, so no duplicate)");
    for (const message of mine) {
      const index = ids.indexOf(message.headers["umw-outbox-id"]!);
      assert.equal(message.key, rows[index]!.key);
      assert.equal(message.topic, rows[index]!.topic);
      assert.equal(message.headers.ce_id, message.headers["umw-outbox-id"]);
      assert.equal(message.headers.ce_type, "dev.umw.test.v1");
      assert.ok(message.headers.traceparent);
      assert.equal(message.headers["umw-key"], undefined, "the key header stays in the outbox");
      assert.match(Buffer.from(message.value).toString(), /^payload-\d+$/);
    }
    // Per key (= per partition), Kafka order is seq order.
    const byKey = new Map<string, bigint[]>();
    for (const message of mine) {
      const list = byKey.get(`${message.topic}|${message.key}`) ?? [];
      list.push(seqOf.get(message.headers["umw-outbox-id"]!)!);
      byKey.set(`${message.topic}|${message.key}`, list);
    }
    for (const [key, seqs] of byKey) assert.deepEqual(seqs, [...seqs].sort((a, b) => (a < b ? -1 : 1)), `order of ${key}`);
    assert.ok(leader.status().published >= 60);

    // Woken by NOTIFY: a new row goes out well before a poll would have fetched it... and polls still work.
    const [late] = await append([{ key: "acme/todo/late" }]);
    await waitForDelivery([late!], 5_000);
    await leader.stop();
    assert.equal(leader.status().role, "stopped");
  });

  test("a command accepted by CommandService reaches Kafka, woken by the after-commit NOTIFY", { timeout: 45_000 }, async () => {
    // Polling every 20 s: delivery within a few seconds means the relay was woken.
    const leader = relay({ pollMs: 20_000 });
    await leaderWithin(leader);
    await sleep(300); // the first (empty) round is over; the relay now waits
    const commands = createCommandService({ db, resources: RESOURCES, topics, log, idempotencySweepMs: 0, listen: false });
    const ctx: CallContext = { requestId: "r", deadline: undefined, peer: "cli", headers: { "idempotency-key": randomUUID() }, signal: new AbortController().signal, log, setHeader: () => undefined };
    const started = Date.now();
    const { receipt } = await commands.handlers.createEntity(create(CreateEntityRequestSchema, { tenant: "acme", type: "todo", id: "e2e", data: { title: "end to end" } }), ctx);
    const commandId = receipt!.commandId!;
    await waitForDelivery([commandId], 5_000);
    assert.ok(Date.now() - started < 5_000);
    const message = received.find((m) => m.headers["umw-outbox-id"] === commandId)!;
    assert.equal(message.topic, topics.commands);
    assert.equal(message.key, "acme/todo/e2e");
    assert.equal(message.headers.ce_id, commandId);
    const command = fromBinary(CommandSchema, message.value);
    assert.equal(command.action.case, "create");
    assert.deepEqual(command.action.value?.data, { title: "end to end" });
    await commands.close();
    await leader.stop();
  });

  test("two relays: one leads; when the leader dies the standby takes over and nothing is lost", { timeout: 45_000 }, async (t) => {
    const first = relay();
    await leaderWithin(first);
    const second = relay();
    await waitFor(() => second.status().role === "standby", { what: "the second relay to stand by", timeoutMs: 5_000 });
    assert.equal(first.status().role, "leader");

    // A steady stream of writes while leaders die.
    const written: string[] = [];
    let writing = true;
    const writer = (async () => {
      let n = 0;
      while (writing) {
        written.push(...(await append([{ key: `k/${n % 7}` }, { key: `k/${(n + 3) % 7}` }])));
        n++;
        await sleep(15);
      }
    })();
    await sleep(500);

    // The leader's lock connection is killed from the outside (what a crash of its host looks like to Postgres).
    const killedAt = Date.now();
    const killedPid = first.status().sessionPid;
    assert.ok(killedPid);
    await db.query("SELECT pg_terminate_backend($1)", [killedPid]);
    const newLeader = await waitFor(
      () => [first, second].find((each) => each.status().role === "leader" && each.status().sessionPid !== killedPid),
      { what: "a new leader on another connection", timeoutMs: 5_000 },
    );
    const takeover = Date.now() - killedAt;
    assert.ok(takeover < 5_000, `took over in ${takeover} ms`);
    t.diagnostic(`after pg_terminate_backend of the leader's connection: new leader in ${takeover} ms`);
    await sleep(500);

    // Then the new leader stops abruptly (no unlock, no final round): the other takes over.
    const survivor = newLeader === second ? first : second;
    await waitFor(() => survivor.status().role === "standby", { what: "the survivor to stand by", timeoutMs: 5_000 });
    const abruptAt = Date.now();
    await newLeader.kill();
    await leaderWithin(survivor);
    const secondTakeover = Date.now() - abruptAt;
    assert.ok(secondTakeover < 3_000, `standby took over in ${secondTakeover} ms`);
    t.diagnostic(`after an abrupt stop of the leader: standby took over in ${secondTakeover} ms`);
    await sleep(500);
    writing = false;
    await writer;

    await waitForDelivery(written, 20_000);
    await waitFor(async () => (await unpublished()) === 0, { what: "every row marked", timeoutMs: 5_000 });
    const duplicates = received.length - receivedIds().size;
    assert.ok(written.length > 50, `${written.length} rows written`);
    // Duplicates are allowed (a crash between ack and mark); loss is not.
    t.diagnostic(`${written.length} rows written during two leader changes, all delivered; ${duplicates} duplicate(s)`);
    await survivor.stop();
  });

  test("Kafka unreachable: a clear error, rows stay unpublished; a good bus publishes them", { timeout: 45_000 }, async (t) => {
    const port = await closedPort();
    const badBus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: [`127.0.0.1:${port}`], clientId: "umw-relay-test-bad", log });
    const broken = relay({ bus: badBus, kafkaLabel: `Kafka at 127.0.0.1:${port}`, retryMinMs: 200, retryMaxMs: 1_000 });
    await leaderWithin(broken);
    const ids = await append([{ key: "down/1" }, { key: "down/2" }, { key: "down/1" }]);
    // Under load another passing error may come first (a slow lock session): wait for the one about Kafka.
    const aboutKafka = (error: string | undefined) => (error?.includes(`Kafka at 127.0.0.1:${port}`) ? error : undefined);
    const error = await waitFor(() => aboutKafka(broken.status().lastError), { what: "the relay to report the outage", timeoutMs: 40_000, everyMs: 200 });
    assert.match(error, new RegExp(`Kafka at 127\\.0\\.0\\.1:${port}`));
    assert.match(error, /rows stay unpublished/);
    t.diagnostic(`reported: ${error}`);
    assert.equal(await unpublished(), 3);
    await broken.stop();

    // Topics exist but the broker goes away for publishing: same report, rows kept.
    const halfBus: EventBus = { ensureTopics: (specs) => bus.ensureTopics(specs), publish: (topic, messages) => badBus.publish(topic, messages), subscribe: (options) => badBus.subscribe(options), subscribeBatch: (options) => badBus.subscribeBatch(options), close: async () => undefined };
    const half = relay({ bus: halfBus, kafkaLabel: `Kafka at 127.0.0.1:${port}`, retryMinMs: 200, retryMaxMs: 1_000 });
    const publishError = await waitFor(() => aboutKafka(half.status().lastError), { what: "the relay to report the failed publish", timeoutMs: 40_000, everyMs: 200 });
    assert.match(publishError, new RegExp(`cannot publish 3 message\\(s\\) to ${prefix.replace(".", "\\.")}umw\\.commands\\.v1 on Kafka at 127\\.0\\.0\\.1:${port}; rows stay unpublished`));
    t.diagnostic(`reported: ${publishError}`);
    assert.equal(await unpublished(), 3);
    await half.stop();
    await badBus.close();

    const healthy = relay();
    await waitForDelivery(ids);
    await waitFor(async () => (await unpublished()) === 0, { what: "rows marked", timeoutMs: 5_000 });
    assert.equal(healthy.status().lastError, undefined);
    await healthy.stop();
  });

  test("Postgres unreachable: a clear error naming it, retried until it answers", { timeout: 45_000 }, async (t) => {
    const port = await closedPort();
    const lost = relay({ db: sessionOpener(`postgres://umw:umw@127.0.0.1:${port}/nothing`), postgresLabel: `Postgres primary at 127.0.0.1:${port}`, retryMinMs: 100, retryMaxMs: 200 });
    const error = await waitFor(() => lost.status().lastError, { what: "the relay to report the outage", timeoutMs: 10_000 });
    assert.match(error, new RegExp(`cannot reach Postgres primary at 127\\.0\\.0\\.1:${port}`));
    assert.equal(lost.status().role, "connecting");
    t.diagnostic(`reported: ${error}`);
    await lost.stop();

    // An outage that ends: the relay connects, leads and publishes.
    let failures = 3;
    const flaky = relay({
      db: async () => {
        if (failures-- > 0) throw new Error("connect ECONNREFUSED (simulated)");
        return db.openSession();
      },
      retryMinMs: 100,
    });
    await leaderWithin(flaky);
    const ids = await append([{ key: "back/1" }]);
    await waitForDelivery(ids);
    assert.equal(flaky.status().lastError, undefined);
    await flaky.stop();
  });

  test("the relay's own settings stay in its transactions: its session commits synchronously after marking rows", { timeout: 45_000 }, async () => {
    let session: DbSession | undefined;
    const watched = relay({ db: async () => (session = await db.openSession()), retentionMs: 0, pruneEveryMs: 100 });
    await leaderWithin(watched);
    const ids = await append([{ key: "setting/1" }, { key: "setting/2" }]);
    await waitForDelivery(ids);
    await waitFor(async () => watched.status().pruned >= 2, { what: "rows marked and pruned", timeoutMs: 10_000 });
    // The same connection the relay marks and prunes on (a shared one, in the embedded mode). The
    // relay keeps pruning meanwhile, so one SHOW may land inside one of its transactions (SET LOCAL
    // off): the setting must be back to on between them, and a leaked session-wide SET never is.
    const setting = async () => (await session!.query<{ synchronous_commit: string }>("SHOW synchronous_commit")).rows[0]!.synchronous_commit;
    await waitFor(async () => ((await setting()) === "on" ? true : undefined), { what: "synchronous_commit on between the relay's transactions", timeoutMs: 5_000 });
    await watched.stop();
  });

  test("published rows older than the retention are pruned", { timeout: 45_000 }, async (t) => {
    await append([{ key: "prune/1" }, { key: "prune/2" }]);
    const pruner = relay({ retentionMs: 0, pruneEveryMs: 100 });
    await waitFor(async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_outbox")).rows[0]!.n) === 0, { what: "an empty outbox", timeoutMs: 10_000 });
    assert.ok(pruner.status().pruned > 0);
    await pruner.stop();
  });
});
