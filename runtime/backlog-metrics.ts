import type { EventBus, PartitionBacklog } from "./bus.js";
import { gauge, type Gauge, type Registry } from "./metrics.js";
import { within } from "./within.js";

/** A scrape never waits on the broker longer than this; the previous values stay until a read succeeds. */
const READ_TIMEOUT_MS = 2_000;

interface ConsumerSource {
  readonly bus: EventBus;
  /** The group as Kafka knows it (with the topic prefix) and as the metric labels it. */
  readonly group: string;
  readonly groupLabel: string;
  readonly topics: readonly string[];
}

interface TopicSource {
  readonly bus: EventBus;
  readonly topic: string;
}

const consumers = new WeakMap<Registry, Set<ConsumerSource>>();
const deadLetterTopics = new WeakMap<Registry, Set<TopicSource>>();

/**
 * `umw_consumer_lag_messages{group,topic,partition}`: messages published to the partition that the
 * group has not committed yet, read from the broker on each scrape (commits trail the handling by up
 * to the consumer's commit interval). Returns the function that stops watching.
 */
export function watchConsumerLag(registry: Registry, source: ConsumerSource): () => void {
  if (!source.bus.backlog) return () => undefined;
  let sources = consumers.get(registry);
  if (!sources) {
    consumers.set(registry, (sources = new Set()));
    const all = sources;
    gauge<"group" | "topic" | "partition">(registry, {
      name: "umw_consumer_lag_messages",
      help: "Per partition: messages published that the consumer group has not committed yet (read from the broker when scraped).",
      labelNames: ["group", "topic", "partition"],
      async collect() {
        await Promise.all(
          [...all].map(async ({ bus, group, groupLabel, topics }) => {
            for (const row of await readBacklog(bus, topics, group)) {
              this.set({ group: groupLabel, topic: row.topic, partition: String(row.partition) }, Number(row.end - (row.committed ?? row.start)));
            }
          }),
        );
      },
    });
  }
  sources.add(source);
  return () => sources.delete(source);
}

/** `umw_dlq_size_messages`: messages the dead-letter topic holds (all partitions), read from the broker on each scrape. */
export function watchDeadLetterSize(registry: Registry, bus: EventBus, topic: string): () => void {
  if (!bus.backlog) return () => undefined;
  let sources = deadLetterTopics.get(registry);
  if (!sources) {
    deadLetterTopics.set(registry, (sources = new Set()));
    const all = sources;
    gauge(registry, {
      name: "umw_dlq_size_messages",
      help: "Messages held in the dead-letter topic (`umw dlq list` shows them; retention removes them).",
      async collect(this: Gauge<string>) {
        let size = 0;
        for (const source of all) for (const row of await readBacklog(source.bus, [source.topic])) size += Number(row.end - row.start);
        this.set(size);
      },
    });
  }
  const source = { bus, topic };
  sources.add(source);
  return () => sources.delete(source);
}

async function readBacklog(bus: EventBus, topics: readonly string[], group?: string): Promise<PartitionBacklog[]> {
  try {
    return await within(bus.backlog!(topics, group), READ_TIMEOUT_MS, () => new Error(`broker offsets not read within ${READ_TIMEOUT_MS} ms`));
  } catch {
    return []; // a broker that does not answer leaves the last values; the consumer's own health says why
  }
}
