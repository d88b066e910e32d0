// The cache updater against the real Kafka broker and Redis (scripts/infra.sh up): domain events
// are published straight to the entity-events topic, as the outbox relay would.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { ChangeKind, DomainEventSchema } from "../../gen/umw/v1/envelope_pb.js";
import { EntitySchema } from "../../gen/umw/v1/entity_pb.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { entityKey } from "../../runtime/entity.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import { resourceSchema, type Resources } from "../../runtime/resources.js";
import { topicNames, topicSpecs } from "../../runtime/topics.js";
import { createCacheUpdater, type CacheOutcome, type CacheUpdater } from "../../services/cache-updater/updater.js";
import { configuredPolicies, versionedWriter } from "../../runtime/cache/versioned-writer.js";
import { entityEntry } from "../../runtime/cache/entry.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { infra } from "../support/env.js";
import { dropKafkaPrefix, runPrefix } from "../processor/support.js";
import { waitFor } from "../support/wait.js";

const log = rootLogger("silent");
const TENANT = "acme";
const KIND_TYPE: Record<ChangeKind, string> = {
  [ChangeKind.UNSPECIFIED]: "",
  [ChangeKind.CREATED]: EVENT_TYPES.entityCreated,
  [ChangeKind.UPDATED]: EVENT_TYPES.entityUpdated,
  [ChangeKind.DELETED]: EVENT_TYPES.entityDeleted,
};

describe("cache updater on Kafka and Redis", { timeout: 60_000 }, () => {
  let prefix: string;
  let topics: ReturnType<typeof topicNames>;
  let bus: KafkaBus;
  let cache: RedisCache;
  let updater: CacheUpdater;
  const resources: Resources = {
    note: resourceSchema.parse({}),
    doc: resourceSchema.parse({ cache: { onEvent: "invalidate" } }),
  };
  const seen: { outcome: CacheOutcome; id: string }[] = [];

  before(async () => {
    prefix = runPrefix();
    topics = topicNames({ topicPrefix: prefix });
    bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: infra.kafkaBrokers, clientId: "umw-test-cache-updater", log });
    await bus.connect();
    await bus.ensureTopics(topicSpecs(topics, 3));
    cache = await RedisCache.connect({ url: infra.redisUrl, log });
    updater = createCacheUpdater({
      bus,
      writer: versionedWriter(cache, { keyPrefix: prefix, policyOf: configuredPolicies(resources) }),
      topic: topics.entityEvents,
      log,
      group: `${prefix}umw-cache-updater`,
      onOutcome: (outcome, message) => seen.push({ outcome, id: message.headers.ce_id ?? "" }),
    });
    await updater.start();
  });

  after(async () => {
    await updater?.stop();
    await bus?.close();
    if (cache) {
      const keys = await cache.redis.keys(`${prefix}*`);
      if (keys.length) await cache.redis.del(...keys);
      await cache.close();
    }
    if (prefix) await dropKafkaPrefix(prefix);
  });

  type Outgoing = { key: string; value: Uint8Array; headers: Record<string, string> };

  function event(kind: ChangeKind, type: string, id: string, version: bigint, data?: JsonObject): Outgoing {
    const key = entityKey(TENANT, type, id);
    const context = newEventContext({ source: "/umw/processor", type: KIND_TYPE[kind], subject: key });
    const entity = create(EntitySchema, { tenant: TENANT, type, id, version, data: kind === ChangeKind.DELETED ? undefined : data });
    const payload = create(DomainEventSchema, { context, commandId: randomUUID(), kind, entity });
    return { key, value: toBinary(DomainEventSchema, payload), headers: { ...cloudEventHeaders(context), "umw-outbox-id": context.id } };
  }

  /** Publishes the events in order (one key: one partition) and waits until the updater handled them all. */
  async function deliver(...events: Outgoing[]): Promise<CacheOutcome[]> {
    await bus.publish(topics.entityEvents, events);
    const ids = events.map((e) => e.headers.ce_id!);
    return waitFor(() => {
      const outcomes = ids.map((id) => seen.find((entry) => entry.id === id)?.outcome);
      return outcomes.every(Boolean) ? (outcomes as CacheOutcome[]) : undefined;
    }, { what: `${events.length} events handled` });
  }

  const read = (type: string, id: string) => cache.get(cacheKey(prefix, TENANT, type, id));

  test("write-through: an older event arriving after a newer one leaves the newer version cached", async () => {
    const id = `n-${randomUUID().slice(0, 8)}`;
    const outcomes = await deliver(event(ChangeKind.UPDATED, "note", id, 2n, { title: "v2" }), event(ChangeKind.CREATED, "note", id, 1n, { title: "v1" }));
    assert.deepEqual(outcomes.map((o) => (o.kind === "skipped" ? o.kind : [o.kind, o.stored])), [["written", true], ["written", false]]);
    const entry = await read("note", id);
    assert.equal(entry?.kind, "entity");
    assert.equal(entry?.version, 2n);
    assert.deepEqual(entry?.entity?.data, { title: "v2" });
    assert.ok(entry!.freshUntil > Date.now(), "fresh for the resource's TTL");

    // Redelivery of the same event is harmless (no inbox needed), and a newer one replaces it.
    await deliver(event(ChangeKind.UPDATED, "note", id, 2n, { title: "v2" }), event(ChangeKind.UPDATED, "note", id, 3n, { title: "v3" }));
    assert.deepEqual((await read("note", id))?.entity?.data, { title: "v3" });
  });

  test("a deletion always tombstones, and a late loader cannot put the old version back", async () => {
    const id = `d-${randomUUID().slice(0, 8)}`;
    await deliver(event(ChangeKind.CREATED, "note", id, 1n, { title: "v1" }), event(ChangeKind.UPDATED, "note", id, 2n, { title: "v2" }), event(ChangeKind.DELETED, "note", id, 3n));
    const entry = await read("note", id);
    assert.deepEqual([entry?.kind, entry?.version, entry?.entity], ["tombstone", 3n, undefined]);
    // A reader that loaded v2 from a lagging replica tries to fill the key: refused.
    const late = create(EntitySchema, { tenant: TENANT, type: "note", id, version: 2n, data: { title: "v2" } });
    const result = await cache.set(cacheKey(prefix, TENANT, "note", id), entityEntry(late, { now: Date.now(), ttlMs: 60_000, graceMs: 0, loadMs: 1 }), 60_000);
    assert.deepEqual(result, { stored: false, current: 3n });
    // An event for the deleted version replayed out of order does not resurrect it either.
    await deliver(event(ChangeKind.UPDATED, "note", id, 2n, { title: "v2" }));
    assert.equal((await read("note", id))?.kind, "tombstone");
  });

  test("invalidate mode fences the key at the event's version instead of writing the data", async () => {
    const id = `i-${randomUUID().slice(0, 8)}`;
    const key = cacheKey(prefix, TENANT, "doc", id);
    // A value a reader cached at v1 before the change.
    const v1 = create(EntitySchema, { tenant: TENANT, type: "doc", id, version: 1n, data: { body: "old" } });
    assert.deepEqual(await cache.set(key, entityEntry(v1, { now: Date.now(), ttlMs: 60_000, graceMs: 0, loadMs: 1 }), 60_000), { stored: true });

    const [outcome] = await deliver(event(ChangeKind.UPDATED, "doc", id, 2n, { body: "new" }));
    assert.deepEqual(outcome, { kind: "invalidated", stored: true, version: 2n });
    const entry = await read("doc", id);
    assert.deepEqual([entry?.kind, entry?.version, entry?.entity], ["tombstone", 2n, undefined]);

    // Below the fence nothing is stored; the next reader's load of v2 is.
    assert.equal((await cache.set(key, entityEntry(v1, { now: Date.now(), ttlMs: 60_000, graceMs: 0, loadMs: 1 }), 60_000)).stored, false);
    const v2 = create(EntitySchema, { tenant: TENANT, type: "doc", id, version: 2n, data: { body: "new" } });
    assert.equal((await cache.set(key, entityEntry(v2, { now: Date.now(), ttlMs: 60_000, graceMs: 0, loadMs: 1 }), 60_000)).stored, true);
    // The same invalidation delivered again keeps the loaded v2 (nothing below v2 is what it says).
    const [again] = await deliver(event(ChangeKind.UPDATED, "doc", id, 2n, { body: "new" }));
    assert.deepEqual(again, { kind: "invalidated", stored: false, version: 2n });
    assert.equal((await read("doc", id))?.kind, "entity");
  });

  test("a batch of many entities' events: each entity's in order, all written, none goes back a version", async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `b${i}-${randomUUID().slice(0, 8)}`);
    const events: Outgoing[] = [];
    for (let version = 1n; version <= 5n; version++) {
      for (const id of ids) events.push(event(version === 1n ? ChangeKind.CREATED : ChangeKind.UPDATED, "note", id, version, { title: `v${version}` }));
    }
    events.push(event(ChangeKind.UPDATED, "note", ids[0]!, 3n, { title: "v3 again" })); // a late redelivery
    // One call, as the bus hands a partition's batch over (handleBatch is what the subscription calls).
    const outcomes = await updater.handleBatch(
      events.map((each, i) => ({ topic: topics.entityEvents, partition: 0, offset: BigInt(i), key: each.key, value: each.value, headers: each.headers, timestamp: Date.now() })),
    );
    assert.equal(outcomes.length, events.length);
    assert.ok(outcomes.slice(0, -1).every((outcome) => outcome.kind === "written" && outcome.stored), "every event in order is stored");
    assert.deepEqual(outcomes.at(-1), { kind: "written", stored: false, version: 3n });
    for (const id of ids) {
      const entry = await read("note", id);
      assert.deepEqual([entry?.version, entry?.entity?.data], [5n, { title: "v5" }], id);
    }
  });

  test("an undecodable event is skipped and the partition moves on", async () => {
    const id = `u-${randomUUID().slice(0, 8)}`;
    const good = event(ChangeKind.CREATED, "note", id, 1n, { title: "after" });
    const garbage = { key: good.key, value: Buffer.from("\u00ff\u00fe not protobuf"), headers: { ce_id: randomUUID() } };
    const outcomes = await deliver(garbage, good);
    assert.deepEqual(outcomes[0], { kind: "skipped", why: "undecodable" });
    assert.equal((await read("note", id))?.version, 1n);
  });
});
