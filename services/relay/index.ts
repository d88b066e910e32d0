import type { TopicSpec } from "../../runtime/bus.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { connectPostgres, redactUrl } from "../../runtime/sql.js";
import { topicNames } from "../../runtime/topics.js";
import type { Config } from "../../runtime/config.js";
import { createOutboxRelay, type OutboxRelay, type OutboxRelayOptions } from "./relay.js";

export { createOutboxRelay, type OutboxRelay, type OutboxRelayOptions, type RelayStatus } from "./relay.js";
export { openPgSession, sessionOpener, type PgSession } from "./pg-session.js";

/** Every topic umw uses, with the configured partition count: created by the relay at start. */
export function umwTopics(config: Pick<Config, "topicPrefix">, partitions: number): TopicSpec[] {
  return Object.values(topicNames(config)).map((name) => ({ name, partitions }));
}

/**
 * `umw serve relay`: the outbox relay on the primary, plus Health on relayPort. Exits with a clear
 * error when Postgres or Kafka cannot be reached at start; once running, outages are retried.
 */
export const relayService: ServiceModule = {
  name: "relay",
  description: "Outbox relay to Kafka",
  async start(runtime) {
    const { config, log } = runtime;
    const db = await connectPostgres({ url: config.pgUrl, role: "primary", log, max: 3 });
    const bus = new KafkaBus({ brokers: config.kafkaBrokers, clientId: "umw-relay", log });
    let relay: OutboxRelay | undefined;
    try {
      await bus.connect();
      const topics = umwTopics(config, config.topicPartitions);
      await bus.ensureTopics(topics);
      const options: OutboxRelayOptions = {
        db,
        bus,
        topics,
        log,
        postgresLabel: `Postgres primary at ${redactUrl(config.pgUrl)}`,
        kafkaLabel: `Kafka at ${config.kafkaBrokers.join(",")}`,
        batchSize: config.relayBatchSize,
        pollMs: config.relayPollMs,
        lockRetryMs: config.relayLockRetryMs,
        retentionMs: config.outboxRetentionMs,
      };
      relay = createOutboxRelay(options);
      relay.start();
      const server = await startMeshServer(runtime, { name: "relay", port: config.relayPort });
      const running = relay;
      return {
        name: "relay",
        async stop() {
          await server.stop();
          await running.stop();
          await bus.close();
          await db.close();
        },
      };
    } catch (error) {
      await relay?.stop();
      await bus.close().catch(() => undefined);
      await db.close().catch(() => undefined);
      throw error;
    }
  },
};
