import assert from "node:assert/strict";
import { test } from "node:test";
import { Registry } from "prom-client";
import { watchConsumerLag, watchDeadLetterSize } from "./backlog-metrics.js";
import { MemoryBus } from "./memory-bus.js";
import { valueOf } from "./metrics.js";

const message = (key: string) => ({ key, value: new Uint8Array([1]) });

test("consumer lag in messages is what the group has not handled yet, and the DLQ size what the topic holds", async () => {
  const bus = new MemoryBus();
  await bus.ensureTopics([{ name: "t", partitions: 1 }, { name: "dlq", partitions: 2 }]);
  const registry = new Registry();
  let release!: () => void;
  const blocked = new Promise<void>((resolve) => (release = resolve));
  let handled = 0;
  const subscription = await bus.subscribe({
    topics: ["t"],
    group: "g",
    handle: async () => {
      handled++;
      await blocked;
    },
  });
  const unwatch = watchConsumerLag(registry, { bus, group: "g", groupLabel: "g", topics: ["t"] });
  watchDeadLetterSize(registry, bus, "dlq");
  await bus.publish("t", [message("a"), message("b"), message("c")]);
  await bus.publish("dlq", [message("x"), message("y")]);

  const lag = async () => valueOf(registry.getSingleMetric("umw_consumer_lag_messages") as never, { group: "g", topic: "t", partition: "0" });
  // The first message is being handled (not committed): all three are behind.
  assert.equal(await lag(), 3);
  assert.equal(await valueOf(registry.getSingleMetric("umw_dlq_size_messages") as never), 2);
  release();
  for (let turn = 0; turn < 1_000 && handled < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(handled, 3);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(await lag(), 0);
  unwatch();
  await subscription.stop();
});
