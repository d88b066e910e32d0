// The embedded mode: the same processor and cache updater on PGlite, the in-memory bus and the
// in-memory cache, without any infrastructure. The outbox rows are moved to the bus by hand here,
// as the relay would.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { CommandSchema } from "../../gen/umw/v1/envelope_pb.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { rootLogger } from "../../runtime/logger.js";
import { MemoryBus } from "../../runtime/memory-bus.js";
import { openPglite } from "../../runtime/pglite.js";
import type { Database } from "../../runtime/sql.js";
import { topicNames } from "../../runtime/topics.js";
import { createCacheUpdater } from "../../services/cache-updater/updater.js";
import { versionedWriter } from "../../runtime/cache/versioned-writer.js";
import { createProcessor, type Outcome } from "../../services/processor/processor.js";
import { writePathTopics } from "../../services/processor/settings.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { MemoryCache } from "../../runtime/cache/memory-cache.js";
import { waitFor } from "../support/wait.js";

const log = rootLogger("silent");
let db: Database;

before(async () => {
  db = await openPglite();
});

after(async () => {
  await db.close();
});

test("embedded: PGlite + MemoryBus + MemoryCache carry a command to the cache", async () => {
  const topics = topicNames({ topicPrefix: "" });
  const bus = new MemoryBus();
  await bus.ensureTopics(writePathTopics(topics, 2));
  const cache = new MemoryCache();
  const outcomes: Outcome[] = [];
  const processor = createProcessor({ db, bus, topics, log, onOutcome: (outcome) => outcomes.push(outcome) });
  const updater = createCacheUpdater({ bus, writer: versionedWriter(cache), topic: topics.entityEvents, log });
  await processor.start();
  await updater.start();

  const id = randomUUID();
  const key = `acme/note/e1`;
  const context = newEventContext({ id, source: "/umw/command", type: EVENT_TYPES.createEntity, subject: key });
  const command = create(CommandSchema, { context, tenant: "acme", principal: "p", idempotencyKey: "k", action: { case: "create", value: { tenant: "acme", type: "note", id: "e1", data: { title: "embedded" } } } });
  const message = { key, value: toBinary(CommandSchema, command), headers: cloudEventHeaders(context) };
  await bus.publish(topics.commands, [message, message]);
  await waitFor(() => (outcomes.length === 2 ? true : undefined), { what: "both deliveries handled" });
  assert.deepEqual(outcomes.map((outcome) => outcome.kind), ["applied", "duplicate"]);

  const { rows } = await db.query<{ payload: Uint8Array; headers: Record<string, string> }>("SELECT payload, headers FROM umw_outbox WHERE topic = $1", [topics.entityEvents]);
  assert.equal(rows.length, 1);
  const { "umw-key": eventKey, ...headers } = rows[0]!.headers;
  await bus.publish(topics.entityEvents, [{ key: eventKey!, value: rows[0]!.payload, headers }]);
  const entry = await waitFor(() => cache.get(cacheKey("", "acme", "note", "e1")), { what: "the cache entry" });
  assert.equal(entry.version, 1n);
  assert.deepEqual(entry.entity?.data, { title: "embedded" });

  await processor.stop();
  await updater.stop();
  await bus.close();
});
