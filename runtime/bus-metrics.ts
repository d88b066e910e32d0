import type { EventBus, IncomingMessage, Subscription } from "./bus.js";
import { watchConsumerLag } from "./backlog-metrics.js";
import { counter, defaultRegistry, gauge, histogram, PIPELINE_BUCKETS, type Registry } from "./metrics.js";

type ConsumerLabel = "group" | "topic" | "partition";

/**
 * The bus as a consumer sees it, measured: every subscription's messages counted by outcome, and
 * per partition the consumer lag in time (`umw_consumer_lag_seconds`: how long the latest message
 * handled on that partition waited since it was produced) and a histogram of that delivery delay.
 * Labels are the consumer group, topic and partition: all from configuration, never from a message.
 * The lag in messages per partition is read from the broker when scraped (runtime/backlog-metrics.ts).
 */
export function instrumentBus(bus: EventBus, registry: Registry = defaultRegistry, groupLabel: (group: string) => string = (group) => group): EventBus {
  const handled = counter<"group" | "topic" | "outcome">(registry, {
    name: "umw_consumer_messages_total",
    help: "Messages a consumer group handled; outcome = ok | error (an error stops the partition and the message is redelivered).",
    labelNames: ["group", "topic", "outcome"],
  });
  const lag = gauge<ConsumerLabel>(registry, {
    name: "umw_consumer_lag_seconds",
    help: "Per partition: time from the production of the latest handled message to the end of its handling.",
    labelNames: ["group", "topic", "partition"],
  });
  const delay = histogram<"group" | "topic">(registry, {
    name: "umw_consumer_delivery_seconds",
    help: "Time from a message's production to the end of its handling by the consumer group.",
    labelNames: ["group", "topic"],
    buckets: PIPELINE_BUCKETS,
  });
  const offset = gauge<ConsumerLabel>(registry, {
    name: "umw_consumer_offset",
    help: "Per partition: offset of the latest message the consumer group handled.",
    labelNames: ["group", "topic", "partition"],
  });
  /** A message handled at `now`: counted, its partition's lag and offset, its delivery delay. */
  const observe = (group: string, message: IncomingMessage, now: number) => {
    const waited = Math.max(0, (now - message.timestamp) / 1000);
    const partition = String(message.partition);
    handled.inc({ group, topic: message.topic, outcome: "ok" });
    lag.set({ group, topic: message.topic, partition }, waited);
    offset.set({ group, topic: message.topic, partition }, Number(message.offset));
    delay.observe({ group, topic: message.topic }, waited);
  };
  return {
    ensureTopics: (topics) => bus.ensureTopics(topics),
    publish: (topic, messages) => bus.publish(topic, messages),
    ...(bus.backlog && { backlog: bus.backlog.bind(bus) }),
    close: () => bus.close(),
    async subscribe(options) {
      const group = groupLabel(options.group);
      const subscription = await bus.subscribe({
        ...options,
        async handle(message: IncomingMessage) {
          try {
            await options.handle(message);
          } catch (error) {
            handled.inc({ group, topic: message.topic, outcome: "error" });
            throw error;
          }
          observe(group, message, Date.now());
        },
      });
      return withLagWatched(subscription, { bus, group: options.group, groupLabel: group, topics: options.topics });
    },
    async subscribeBatch(options) {
      const group = groupLabel(options.group);
      const subscription = await bus.subscribeBatch({
        ...options,
        async handleBatch(batch) {
          try {
            await options.handleBatch(batch);
          } catch (error) {
            for (const message of batch.messages) handled.inc({ group, topic: message.topic, outcome: "error" });
            throw error;
          }
          const now = Date.now();
          for (const message of batch.messages) observe(group, message, now);
        },
      });
      return withLagWatched(subscription, { bus, group: options.group, groupLabel: group, topics: options.topics });
    },
  };

  /** The subscription's lag in messages is read from the broker at each scrape until it stops. */
  function withLagWatched(subscription: Subscription, source: Parameters<typeof watchConsumerLag>[1]): Subscription {
    const unwatch = watchConsumerLag(registry, source);
    return {
      stop: async () => {
        unwatch();
        await subscription.stop();
      },
    };
  }
}
