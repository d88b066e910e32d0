// `umw serve processor cache-updater` as ServiceModules: real Postgres, Kafka and Redis, mTLS Health.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { credentials, loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { create, toBinary } from "@bufbuild/protobuf";
import { Kafka, logLevel } from "kafkajs";
import { CommandSchema } from "../../gen/umw/v1/envelope_pb.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { loadConfig, type Config } from "../../runtime/config.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import type { Infrastructure } from "../../runtime/infrastructure.js";
import { realInfrastructure } from "../../runtime/infrastructure-real.js";
import type { RunningService } from "../../runtime/service.js";
import { composeRuntime } from "../../services/compose.js";
import { topicNames } from "../../runtime/topics.js";
import { cacheUpdaterService } from "../../services/cache-updater/index.js";
import { processorService } from "../../services/processor/index.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra } from "../support/env.js";
import { freePort } from "../support/ports.js";
import pg from "pg";
import { dropKafkaPrefix, runPrefix } from "./support.js";
import { waitFor } from "../support/wait.js";

const log = rootLogger("silent");

function healthStatus(address: string, certs: TestCerts): Promise<string> {
  const definition = loadSync(healthProtoPath, { enums: String });
  const Health = (loadPackageDefinition(definition) as GrpcObject & { grpc: { health: { v1: { Health: ServiceClientConstructor } } } }).grpc.health.v1.Health;
  const cli = certs.identity("cli");
  const client = new Health(address, credentials.createSsl(cli.ca, cli.key, cli.cert)) as any;
  return new Promise<string>((resolve, reject) =>
    client.check({ service: "" }, { deadline: Date.now() + 3_000 }, (error: Error | null, response: { status: string }) => {
      client.close();
      if (error) reject(error);
      else resolve(response.status);
    }),
  );
}

describe("processor and cache updater served as ServiceModules", { timeout: 60_000 }, () => {
  let certs: TestCerts;
  let testDb: TestDatabase;
  let config: Config;
  let prefix: string;
  let infrastructure: Infrastructure | undefined;
  const running: RunningService[] = [];

  before(async () => {
    certs = testCerts(["processor", "cache-updater", "cli"]);
    testDb = await createTestDatabase();
    prefix = runPrefix();
    config = {
      ...loadConfig({ ...process.env, UMW_CONFIG: "" }),
      pgUrl: testDb.url,
      topicPrefix: prefix,
      cacheKeyPrefix: prefix,
      certsDir: certs.dir,
      processorPort: await freePort(),
      cacheUpdaterPort: await freePort(),
    };
    infrastructure = realInfrastructure(config, log);
    const runtime = await composeRuntime(config, log, infrastructure);
    running.push(await processorService.start(runtime));
    running.push(await cacheUpdaterService.start(runtime));
  });

  after(async () => {
    for (const service of running.reverse()) await service.stop();
    await infrastructure?.close();
    await testDb?.drop();
    certs?.remove();
    if (prefix) {
      const redis = await RedisCache.connect({ url: infra.redisUrl, log });
      const keys = await redis.redis.keys(`${prefix}*`);
      if (keys.length) await redis.redis.del(...keys);
      await redis.close();
      await dropKafkaPrefix(prefix);
    }
  });

  test("both serve Health over mTLS, create their topics, and carry a command to the cache", async () => {
    assert.equal(await healthStatus(`127.0.0.1:${config.processorPort}`, certs), "SERVING");
    assert.equal(await healthStatus(`127.0.0.1:${config.cacheUpdaterPort}`, certs), "SERVING");

    const topics = topicNames(config);
    const admin = new Kafka({ sasl: infra.kafkaSasl, brokers: [...infra.kafkaBrokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const metadata = await admin.fetchTopicMetadata({ topics: Object.values(topics) });
    await admin.disconnect();
    assert.deepEqual(
      metadata.topics.map((topic) => [topic.name, topic.partitions.length]).sort(),
      Object.values(topics).map((name) => [name, 6]).sort(),
    );

    // A command as the relay would publish it; the domain event as the relay would, too.
    const id = `svc-${randomUUID().slice(0, 8)}`;
    const commandId = randomUUID();
    const key = `acme/note/${id}`;
    const context = newEventContext({ id: commandId, source: "/umw/command", type: EVENT_TYPES.createEntity, subject: key });
    const command = create(CommandSchema, { context, tenant: "acme", principal: "p", idempotencyKey: "k", action: { case: "create", value: { tenant: "acme", type: "note", id, data: { title: "served" } } } });
    const bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: infra.kafkaBrokers, clientId: "umw-test-service", log });
    try {
      await bus.publish(topics.commands, [{ key, value: toBinary(CommandSchema, command), headers: cloudEventHeaders(context) }]);
      const db = new pg.Client({ connectionString: testDb.url });
      await db.connect();
      const event = await waitFor(async () => {
        const { rows } = await db.query<{ payload: Buffer; headers: Record<string, string> }>("SELECT payload, headers FROM umw_outbox WHERE aggregateid = $1", [key]);
        return rows[0];
      }, { what: "the domain event in the outbox" });
      await db.end();
      const { "umw-key": eventKey, ...headers } = event.headers;
      await bus.publish(topics.entityEvents, [{ key: eventKey!, value: event.payload, headers }]);
    } finally {
      await bus.close();
    }
    const cache = await RedisCache.connect({ url: infra.redisUrl, log });
    try {
      const entry = await waitFor(async () => (await cache.get(cacheKey(prefix, "acme", "note", id))) ?? undefined, { what: "the entity in the cache" });
      assert.equal(entry.version, 1n);
      assert.deepEqual(entry.entity?.data, { title: "served" });
    } finally {
      await cache.close();
    }
  });
});
