// Smoke test of the real services started by `scripts/infra.sh up`
// (Redis, Postgres primary + streaming replica, Kafka). URLs come from the
// env exported by `scripts/infra-env.sh`, with the same defaults here.
//
//   scripts/infra.sh up && node --import tsx --test test/infra.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import kafkajs from "kafkajs";
import { infra } from "./support/env.js";
import { waitFor } from "./support/wait.js";

const REDIS_URL = infra.redisUrl;
const PG_URL = infra.pgUrl;
const PG_REPLICA_URL = infra.pgReplicaUrl;
const KAFKA_BROKERS = [...infra.kafkaBrokers];

const unique = (prefix: string): string => `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;


test("redis: SET/GET/DEL", { timeout: 10_000 }, async () => {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const key = `${unique("umw_infra_test")}:key`;
    const value = randomBytes(8).toString("hex");
    assert.equal(await redis.set(key, value, "EX", 60), "OK");
    assert.equal(await redis.get(key), value);
    assert.equal(await redis.del(key), 1);
    assert.equal(await redis.get(key), null);
  } finally {
    redis.disconnect();
  }
});

test("postgres: primary writes stream to the read-only replica", { timeout: 20_000 }, async () => {
  const primary = new pg.Client({ connectionString: PG_URL });
  const replica = new pg.Client({ connectionString: PG_REPLICA_URL });
  const table = unique("umw_infra_test");
  await primary.connect();
  try {
    await replica.connect();

    const primaryRecovery = await primary.query<{ r: boolean }>("select pg_is_in_recovery() as r");
    assert.equal(primaryRecovery.rows[0]?.r, false, "primary must not be in recovery");
    const replicaRecovery = await replica.query<{ r: boolean }>("select pg_is_in_recovery() as r");
    assert.equal(replicaRecovery.rows[0]?.r, true, "replica must be in recovery");

    await primary.query(`create table ${table} (id int primary key, note text not null)`);
    const note = randomBytes(8).toString("hex");
    await primary.query(`insert into ${table} (id, note) values (1, $1)`, [note]);

    // Streaming replication: the row shows up on the replica without any action.
    const replicated = await waitFor(async () => {
      try {
        const res = await replica.query<{ note: string }>(`select note from ${table} where id = 1`);
        return res.rows[0]?.note;
      } catch (err) {
        if ((err as { code?: string }).code === "42P01") return undefined; // table not replayed yet
        throw err;
      }
    }, { what: `row in ${table} on the replica`, timeoutMs: 10_000 });
    assert.equal(replicated, note);

    // Writes on the replica are refused: read_only_sql_transaction.
    await assert.rejects(
      replica.query(`insert into ${table} (id, note) values (2, 'nope')`),
      (err: unknown) => {
        assert.equal((err as { code?: string }).code, "25006");
        return true;
      },
    );
  } finally {
    await primary.query(`drop table if exists ${table}`).catch(() => {});
    await replica.end().catch(() => {});
    await primary.end();
  }
});

test("kafka: create topic, produce, consume, delete topic", { timeout: 30_000 }, async () => {
  const kafka = new kafkajs.Kafka({
    sasl: infra.kafkaSasl,
    clientId: "umw-infra-test",
    brokers: KAFKA_BROKERS,
    // Retriable errors (e.g. "group coordinator not available" while
    // __consumer_offsets is created on first use) are logged at ERROR level;
    // real failures still surface as rejected promises.
    logLevel: kafkajs.logLevel.NOTHING,
  });
  const topic = unique("umw-infra-test");
  const groupId = unique("umw-infra-test-group");
  const admin = kafka.admin();
  const producer = kafka.producer();
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1_000 });
  await admin.connect();
  try {
    assert.equal(
      await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true }),
      true,
    );

    const value = randomBytes(8).toString("hex");
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: [{ key: "k", value }] });

    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let timer: NodeJS.Timeout | undefined;
    const got = await new Promise<string>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error("no message consumed within 20s")), 20_000);
      consumer
        .run({ eachMessage: async ({ message }) => resolve(message.value?.toString() ?? "") })
        .catch(reject);
    }).finally(() => clearTimeout(timer));
    assert.equal(got, value);
  } finally {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
  }
});
