import { Kafka, logLevel, type Consumer, type Producer, type LogEntry } from "kafkajs";
import type { EventBus, IncomingMessage, OutgoingMessage, SubscribeOptions, Subscription, TopicSpec } from "./bus.js";
import type { Logger } from "./logger.js";
import { unavailable } from "./errors.js";

export interface KafkaBusOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly log: Logger;
  /** How long to keep trying to reach the broker at start before giving up with a clear error. */
  readonly connectTimeoutMs?: number;
}

/** EventBus on a Kafka cluster through kafkajs (kept behind the port so another client can replace it). */
export class KafkaBus implements EventBus {
  private readonly kafka: Kafka;
  private producerReady: Promise<Producer> | undefined;
  private readonly consumers = new Set<Consumer>();

  constructor(private readonly options: KafkaBusOptions) {
    const log = options.log.child({ component: "kafka" });
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: [...options.brokers],
      connectionTimeout: 3_000,
      retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2_000 },
      logLevel: logLevel.WARN,
      logCreator: () => (entry: LogEntry) => {
        const { message, ...rest } = entry.log;
        if (entry.level <= logLevel.ERROR) log.error(rest, message);
        else log.warn(rest, message);
      },
    });
  }

  /** Fails with UNAVAILABLE naming the brokers when none answers within the connect timeout. */
  async connect(): Promise<void> {
    const admin = this.kafka.admin();
    const deadline = Date.now() + (this.options.connectTimeoutMs ?? 15_000);
    for (;;) {
      try {
        await admin.connect();
        await admin.describeCluster();
        await admin.disconnect();
        return;
      } catch (error) {
        await admin.disconnect().catch(() => undefined);
        if (Date.now() > deadline) {
          throw unavailable("KAFKA_UNREACHABLE", `cannot reach Kafka at ${this.options.brokers.join(",")}: ${(error as Error).message}`);
        }
        this.options.log.warn({ brokers: this.options.brokers }, "Kafka not reachable yet; retrying");
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  async ensureTopics(topics: readonly TopicSpec[]): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const existing = new Set(await admin.listTopics());
      const missing = topics.filter((topic) => !existing.has(topic.name));
      if (missing.length) {
        await admin.createTopics({
          waitForLeaders: true,
          topics: missing.map((topic) => ({ topic: topic.name, numPartitions: topic.partitions, replicationFactor: -1 })),
        });
      }
    } finally {
      await admin.disconnect();
    }
  }

  async publish(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const producer = await this.readyProducer();
    await producer.send({
      topic,
      acks: -1,
      messages: messages.map((message) => ({
        key: message.key,
        value: Buffer.from(message.value.buffer, message.value.byteOffset, message.value.byteLength),
        headers: { ...message.headers },
      })),
    });
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    const consumer = this.kafka.consumer({
      groupId: options.group,
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      rebalanceTimeout: 10_000,
      maxWaitTimeInMs: 100,
      retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2_000 },
    });
    this.consumers.add(consumer);
    await consumer.connect();
    for (const topic of options.topics) await consumer.subscribe({ topic, fromBeginning: options.fromBeginning ?? false });
    await consumer.run({
      autoCommit: true,
      autoCommitInterval: 1_000,
      partitionsConsumedConcurrently: 8,
      eachMessage: async ({ topic, partition, message }) => {
        const incoming: IncomingMessage = {
          topic,
          partition,
          offset: BigInt(message.offset),
          key: message.key?.toString() ?? "",
          value: message.value ?? Buffer.alloc(0),
          headers: decodeHeaders(message.headers),
          timestamp: Number(message.timestamp),
        };
        await options.handle(incoming);
      },
    });
    return {
      stop: async () => {
        this.consumers.delete(consumer);
        await consumer.disconnect();
      },
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.consumers].map((consumer) => consumer.disconnect()));
    this.consumers.clear();
    if (this.producerReady) await (await this.producerReady.catch(() => undefined))?.disconnect();
    this.producerReady = undefined;
  }

  private readyProducer(): Promise<Producer> {
    this.producerReady ??= (async () => {
      const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
      await producer.connect();
      return producer;
    })().catch((error: unknown) => {
      this.producerReady = undefined;
      throw error;
    });
    return this.producerReady;
  }
}

function decodeHeaders(headers: Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined): Record<string, string> {
  const decoded: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {})) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) decoded[key] = first.toString();
  }
  return decoded;
}
