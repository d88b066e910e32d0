// The write path behind CommandService, end to end on the real services: a command on Kafka ->
// processor (Postgres) -> outbox -> relay -> entity events on Kafka -> cache updater -> Redis.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { CommandSchema } from "../../gen/umw/v1/envelope_pb.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { entityKey } from "../../runtime/entity.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import { appendToOutbox } from "../../runtime/outbox.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { topicNames, topicSpecs } from "../../runtime/topics.js";
import { createCacheUpdater, type CacheUpdater } from "../../services/cache-updater/updater.js";
import { versionedWriter } from "../../runtime/cache/versioned-writer.js";
import { createProcessor, type Processor } from "../../services/processor/processor.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { createOutboxRelay, type OutboxRelay } from "../../services/relay/relay.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra } from "../support/env.js";
import { dropKafkaPrefix, runPrefix } from "../processor/support.js";
import { waitFor } from "../support/wait.js";

const log = rootLogger("silent");
const TENANT = "acme";

describe("write path: processor -> outbox -> relay -> cache updater", { timeout: 60_000 }, () => {
  let prefix: string;
  let topics: ReturnType<typeof topicNames>;
  let testDb: TestDatabase;
  let database: Database;
  let bus: KafkaBus;
  let cache: RedisCache;
  let processor: Processor;
  let relay: OutboxRelay;
  let updater: CacheUpdater;

  before(async () => {
    prefix = runPrefix();
    topics = topicNames({ topicPrefix: prefix });
    testDb = await createTestDatabase();
    const db = await connectPostgres({ url: testDb.url, role: "primary", log });
    database = db;
    bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: infra.kafkaBrokers, clientId: "umw-test-write-path", log });
    await bus.connect();
    const specs = topicSpecs(topics, 3);
    await bus.ensureTopics(specs);
    cache = await RedisCache.connect({ url: infra.redisUrl, log });
    processor = createProcessor({ db, bus, topics, log, group: `${prefix}umw-processor` });
    relay = createOutboxRelay({ db, bus, topics: specs, log, pollMs: 100 });
    updater = createCacheUpdater({ bus, writer: versionedWriter(cache, { keyPrefix: prefix }), topic: topics.entityEvents, log, group: `${prefix}umw-cache-updater` });
    relay.start();
    await Promise.all([processor.start(), updater.start(), relay.whenLeader()]);
  });

  after(async () => {
    await processor?.stop();
    await updater?.stop();
    await relay?.stop();
    await bus?.close();
    await database?.close();
    await testDb?.drop();
    if (cache) {
      const keys = await cache.redis.keys(`${prefix}*`);
      if (keys.length) await cache.redis.del(...keys);
      await cache.close();
    }
    if (prefix) await dropKafkaPrefix(prefix);
  });

  /** As CommandService would: the status row and the command in the outbox, in one transaction. */
  async function accept(action: NonNullable<MessageInitShape<typeof CommandSchema>["action"]>): Promise<string> {
    const id = randomUUID();
    const value = action.value as { tenant: string; type: string; id: string };
    const key = entityKey(value.tenant, value.type, value.id);
    const type = { create: EVENT_TYPES.createEntity, update: EVENT_TYPES.updateEntity, patch: EVENT_TYPES.patchEntity, delete: EVENT_TYPES.deleteEntity }[action.case!]!;
    const context = newEventContext({ id, source: "/umw/command", type, subject: key });
    const command = create(CommandSchema, { context, tenant: value.tenant, principal: "alice", idempotencyKey: `k-${id}`, action });
    await database.transaction(async (tx) => {
      await tx.query(`INSERT INTO umw_commands (id, tenant, principal, type, entity_id, action, state) VALUES ($1, $2, 'alice', $3, $4, $5, 'accepted')`, [
        id,
        value.tenant,
        value.type,
        value.id,
        action.case,
      ]);
      await appendToOutbox(tx, { id, aggregatetype: value.type, aggregateid: key, type, topic: topics.commands, key, payload: toBinary(CommandSchema, command), headers: cloudEventHeaders(context) });
    });
    return id;
  }

  async function applied(commandId: string): Promise<string> {
    return waitFor(async () => {
      const { rows } = await database.query<{ state: string; version: string }>("SELECT state, version::text AS version FROM umw_commands WHERE id = $1", [commandId]);
      if (rows[0] && rows[0].state !== "accepted" && rows[0].state !== "applied") assert.fail(`command ${commandId} ${rows[0].state}`);
      return rows[0]?.state === "applied" ? rows[0].version : undefined;
    }, { what: `command ${commandId} applied` });
  }

  test("each applied change reaches the cache at its version; the deletion leaves a tombstone", async () => {
    const id = `w-${randomUUID().slice(0, 8)}`;
    const key = cacheKey(prefix, TENANT, "note", id);
    const cached = (version: bigint) => waitFor(async () => {
      const entry = await cache.get(key);
      return entry && entry.version === version ? entry : undefined;
    }, { what: `cache at v${version}` });

    assert.equal(await applied(await accept({ case: "create", value: { tenant: TENANT, type: "note", id, data: { title: "one" } } })), "1");
    assert.deepEqual((await cached(1n)).entity?.data, { title: "one" });

    assert.equal(await applied(await accept({ case: "patch", value: { tenant: TENANT, type: "note", id, data: { done: true }, expectedVersion: 1n } })), "2");
    assert.deepEqual((await cached(2n)).entity?.data, { title: "one", done: true });

    assert.equal(await applied(await accept({ case: "delete", value: { tenant: TENANT, type: "note", id } })), "3");
    assert.equal((await cached(3n)).kind, "tombstone");

    // Every message went through one inbox row each, and the relay marked every outbox row.
    const { rows } = await database.query<{ inbox: number }>("SELECT count(*)::int AS inbox FROM umw_inbox");
    assert.equal(rows[0]!.inbox, 3);
    await waitFor(async () => {
      const { rows: left } = await database.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_outbox WHERE published_at IS NULL");
      return left[0]!.n === 0 ? true : undefined;
    }, { what: "the outbox drained" });
  });
});
