// KafkaBus on the real broker: the publishes of one tick leave together and keep their order, and
// a batch subscription commits in the background what its handler finished — never what it did
// not — and everything handled when it stops.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingMessage, OutgoingMessage } from "../../runtime/bus.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import { infra } from "../support/env.js";
import { dropKafkaPrefix, runPrefix } from "../support/kafka.js";
import { waitFor } from "../support/wait.js";

const log = rootLogger("silent");
const prefix = runPrefix();
const message = (key: string, value: string): OutgoingMessage => ({ key, value: Buffer.from(value), headers: { n: value } });
const text = (each: IncomingMessage) => Buffer.from(each.value).toString();

describe("KafkaBus on Kafka", () => {
  let bus: KafkaBus;

  before(async () => {
    bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: infra.kafkaBrokers, clientId: "umw-test-kafka-bus", log });
    await bus.connect();
  });

  after(async () => {
    await bus?.close();
    await dropKafkaPrefix(prefix);
  });

  /** The group's committed offset summed over the topic's partitions (0 where it has none). */
  async function committed(topic: string, group: string): Promise<number> {
    return (await bus.backlog(topic ? [topic] : [], group)).reduce((sum, row) => sum + Number(row.committed ?? 0n), 0);
  }

  test("publishes of one tick to two topics all arrive, each topic's in call order", async () => {
    const [a, b] = [`${prefix}tick-a`, `${prefix}tick-b`];
    await bus.ensureTopics([
      { name: a, partitions: 1 },
      { name: b, partitions: 1 },
    ]);
    await Promise.all([
      bus.publish(a, [message("k", "a1"), message("k", "a2")]),
      bus.publish(b, [message("k", "b1")]),
      bus.publish(a, [message("k", "a3")]),
    ]);
    const seen: IncomingMessage[] = [];
    const subscription = await bus.subscribeBatch({ topics: [a, b], group: `${prefix}tick`, fromBeginning: true, handleBatch: async (batch) => void seen.push(...batch.messages) });
    try {
      await waitFor(() => seen.length >= 4, { what: "the four messages" });
      assert.deepEqual(seen.filter((each) => each.topic === a).map(text), ["a1", "a2", "a3"]);
      assert.deepEqual(seen.filter((each) => each.topic === b).map(text), ["b1"]);
      assert.equal(seen.find((each) => text(each) === "a2")?.headers.n, "a2");
    } finally {
      await subscription.stop();
    }
  });

  test("a batch's offsets are committed once its handler finished, never before; a rejected batch is not committed and comes again", async () => {
    const topic = `${prefix}commit`;
    const group = `${prefix}commit-group`;
    await bus.ensureTopics([{ name: topic, partitions: 1 }]);
    await bus.publish(topic, [message("k", "1"), message("k", "2"), message("k", "3")]);

    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const handled: string[] = [];
    const subscription = await bus.subscribeBatch({
      topics: [topic],
      group,
      fromBeginning: true,
      maxBatchSize: 1,
      handleBatch: async (batch) => {
        calls++;
        const value = text(batch.messages[0]!);
        if (value === "2" && calls === 2) throw new Error("the first delivery of 2 fails");
        if (value === "3") await held;
        handled.push(value);
      },
    });
    try {
      // 1 handled, 2 failed once and handled on its redelivery, 3 held in its handler: offsets 0 and 1 are committed, not 2.
      await waitFor(async () => handled.includes("2") && (await committed(topic, group)) === 2, { what: "the offsets of 1 and 2 committed" });
      assert.deepEqual(handled, ["1", "2"]);
      assert.equal(calls, 4, "1, 2 (rejected), 2 again, 3 (held)");
      assert.equal(await committed(topic, group), 2, "3's handler has not finished: its offset is not committed");
      release();
      await waitFor(async () => (await committed(topic, group)) === 3, { what: "the offset of 3 committed" });
      assert.deepEqual(handled, ["1", "2", "3"]);
    } finally {
      release();
      await subscription.stop();
    }
  });

  test("stop lets the batch in progress finish and commits it before leaving the group", async () => {
    const topic = `${prefix}stop`;
    const group = `${prefix}stop-group`;
    await bus.ensureTopics([{ name: topic, partitions: 1 }]);
    await bus.publish(topic, [message("k", "1"), message("k", "2")]);
    let started: () => void = () => undefined;
    const inHandler = new Promise<void>((resolve) => (started = resolve));
    const handled: string[] = [];
    const subscription = await bus.subscribeBatch({
      topics: [topic],
      group,
      fromBeginning: true,
      maxBatchSize: 1,
      handleBatch: async (batch) => {
        const value = text(batch.messages[0]!);
        if (value === "2") {
          started();
          await new Promise((resolve) => setTimeout(resolve, 300));
        }
        handled.push(value);
      },
    });
    await inHandler;
    await subscription.stop();
    assert.deepEqual(handled, ["1", "2"], "the batch in progress finished");
    assert.equal(await committed(topic, group), 2, "and was committed before the consumer left");

    // A new member of the group gets nothing again: what was handled was committed.
    await bus.publish(topic, [message("k", "3")]);
    const again: string[] = [];
    const next = await bus.subscribeBatch({ topics: [topic], group, fromBeginning: true, handleBatch: async (batch) => void again.push(...batch.messages.map(text)) });
    try {
      await waitFor(() => again.includes("3"), { what: "the message published after the stop" });
      assert.deepEqual(again, ["3"]);
    } finally {
      await next.stop();
    }
  });
});
