import type { TopicSpec } from "../../runtime/bus.js";
import { closeStack, startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { topicNames } from "../../runtime/topics.js";
import type { Config } from "../../runtime/config.js";
import { createOutboxRelay } from "./relay.js";
import { outboxGauges, relayMetrics } from "./relay-metrics.js";

export { createOutboxRelay, type OutboxRelay, type OutboxRelayOptions, type RelayStatus } from "./relay.js";

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
  description: "Outbox relay to the event bus",
  async start(runtime) {
    const { config, log, infrastructure } = runtime;
    const cleanup = closeStack(log);
    try {
      const db = await infrastructure.primary("relay");
      const bus = await infrastructure.bus();
      const topics = umwTopics(config, config.topicPartitions);
      await bus.ensureTopics(topics);
      const relay = createOutboxRelay({
        db,
        bus,
        topics,
        log,
        postgresLabel: infrastructure.labels.primary,
        kafkaLabel: infrastructure.labels.bus,
        batchSize: config.relayBatchSize,
        pollMs: config.relayPollMs,
        lockRetryMs: config.relayLockRetryMs,
        retentionMs: config.outboxRetentionMs,
        metrics: relayMetrics(),
      });
      outboxGauges(db);
      cleanup.push(() => relay.stop());
      relay.start();
      const server = await startMeshServer(runtime, { name: "relay", port: config.relayPort });
      cleanup.push(() => server.stop());
      return { name: "relay", stop: cleanup.closeAll };
    } catch (error) {
      await cleanup.closeAll();
      throw error;
    }
  },
};
