import { setTimeout as sleep } from "node:timers/promises";
import { Kafka, logLevel, type Admin, type Consumer, type ConsumerRunConfig, type KafkaMessage, type Message, type Producer, type LogEntry, type SASLOptions } from "kafkajs";
import {
  DEFAULT_MAX_BATCH_SIZE,
  plainBatch,
  type EventBus,
  type IncomingMessage,
  type OutgoingMessage,
  type PartitionBacklog,
  type SubscribeBatchOptions,
  type SubscribeOptions,
  type Subscription,
  type TopicSpec,
} from "./bus.js";
import type { Logger } from "./logger.js";
import { withRetry } from "./retry.js";
import { BackgroundCommit } from "./background-commit.js";
import { unavailable } from "./errors.js";
import { processReadiness } from "./readiness.js";

/**
 * A consumer's own retries (joining its group, fetching, committing, and a handler that rejects):
 * generous, so that a broker restart or a coordinator that is still loading ("The coordinator is
 * loading and hence can't process requests") is waited out inside the consumer, not by crashing
 * and rebuilding it. About 25 s of attempts before kafkajs gives up and restarts the consumer.
 */
const CONSUMER_RETRY = { retries: 30, initialRetryTime: 100, maxRetryTime: 1_000 };
/**
 * A consumer that shows no sign of life this long (no fetch, no join, no crash) is stuck, and is
 * rebuilt: after a broker restart kafkajs can rejoin and then never fetch again, silently
 * (test/chaos/faults-under-load.test.ts saw it; kafkajs issue #1163). A healthy consumer fetches
 * every `maxWaitTimeInMs`; one that kafkajs is restarting crashes again within ~40 s at most.
 */
const STALL_MS = 30_000;
/** How long to wait before rebuilding a consumer that kafkajs stopped for good (a non-retriable crash). */
const RESUBSCRIBE_BACKOFF_MS = { initial: 250, max: 5_000 };

export interface KafkaBusOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly log: Logger;
  /** How long to keep trying to reach the broker at start before giving up with a clear error. */
  readonly connectTimeoutMs?: number;
  /** SASL credentials (runtime/kafka-sasl.ts, from UMW_KAFKA_SASL_*); unset = no authentication. */
  readonly sasl?: SASLOptions;
}

/** EventBus on a Kafka cluster through kafkajs (kept behind the port so another client can replace it). */
export class KafkaBus implements EventBus {
  private readonly kafka: Kafka;
  private producerReady: Promise<Producer> | undefined;
  private adminReady: Promise<Admin> | undefined;
  private readonly consumers = new Set<Consumer>();
  /** Publishes waiting for the end of the current tick (sendSameTick). */
  private readonly sameTick: { topic: string; messages: Message[]; resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor(private readonly options: KafkaBusOptions) {
    const log = options.log.child({ component: "kafka" });
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: [...options.brokers],
      ...(options.sasl && { sasl: options.sasl }),
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
    try {
      await withRetry(
        async () => {
          try {
            await admin.connect();
            await admin.describeCluster();
          } finally {
            await admin.disconnect().catch(() => undefined);
          }
        },
        {
          initialDelayMs: 250,
          maxDelayMs: 1_000,
          deadline: Date.now() + (this.options.connectTimeoutMs ?? 15_000),
          onRetry: () => this.options.log.warn({ brokers: this.options.brokers }, "Kafka not reachable yet; retrying"),
        },
      );
    } catch (error) {
      throw unavailable("KAFKA_UNREACHABLE", `cannot reach Kafka at ${this.options.brokers.join(",")}: ${(error as Error).message}`);
    }
  }

  /**
   * Creates the missing topics and returns once every partition has a leader. Services of one
   * process call this side by side at start: a creation that loses the race ("already exists")
   * is fine, and nobody goes on before the leaders are elected (else "This server does not host
   * this topic-partition" on the first subscribe or send).
   */
  async ensureTopics(topics: readonly TopicSpec[]): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const names = topics.map((topic) => topic.name);
      await withRetry(
        async () => {
          const existing = new Set(await admin.listTopics());
          const missing = topics.filter((topic) => !existing.has(topic.name));
          if (missing.length) {
            await admin
              .createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic: topic.name, numPartitions: topic.partitions, replicationFactor: -1 })) })
              .catch((error: { errors?: { type?: string }[] }) => {
                if (!error.errors?.length || error.errors.some((each) => each.type !== "TOPIC_ALREADY_EXISTS")) throw error;
              });
          }
          const { topics: metadata } = await admin.fetchTopicMetadata({ topics: names });
          const leaderless = metadata.filter((topic) => topic.partitions.length === 0 || topic.partitions.some((partition) => partition.leader < 0));
          if (leaderless.length) throw new Error(`no leader yet for ${leaderless.map((topic) => topic.name).join(", ")}`);
        },
        { initialDelayMs: 100, maxDelayMs: 1_000, deadline: Date.now() + 30_000 },
      );
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * Publishes with acks=all. The publishes made in one tick (the relay's topics of one round) leave
   * as ONE produce request (kafkajs sendBatch): with one request in flight per connection
   * (idempotent producer), separate sends would wait for each other's acknowledgement. They
   * succeed or fail together; each topic's messages keep their order (calls in call order).
   */
  publish(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      if (this.sameTick.length === 0) queueMicrotask(() => void this.sendSameTick());
      this.sameTick.push({
        topic,
        messages: messages.map((message) => ({
          key: message.key,
          value: Buffer.from(message.value.buffer, message.value.byteOffset, message.value.byteLength),
          headers: { ...message.headers },
        })),
        resolve,
        reject,
      });
    });
  }

  private async sendSameTick(): Promise<void> {
    const sends = this.sameTick.splice(0);
    try {
      const producer = await this.readyProducer();
      await producer.sendBatch({ acks: -1, topicMessages: sends.map(({ topic, messages }) => ({ topic, messages })) });
      for (const send of sends) send.resolve();
    } catch (error) {
      for (const send of sends) send.reject(error);
    }
  }

  /** One message at a time per partition (kafkajs eachMessage), partitions side by side. */
  subscribe(options: SubscribeOptions): Promise<Subscription> {
    return this.supervise(options, () => ({
      autoCommit: true,
      eachMessage: async ({ topic, partition, message }) => {
        await options.handle(incomingMessage(topic, partition, message));
      },
    }));
  }

  /**
   * kafkajs eachBatch: a fetched partition batch is handed over in chunks of at most maxBatchSize;
   * each chunk's last offset is resolved only after its handler resolved, and then committed in
   * the background (runtime/background-commit.ts: never a message whose handler has not finished,
   * and no batch waits for the coordinator's answer), with a heartbeat between chunks. A chunk
   * that rejects is fetched and delivered again from its start. Stopping lets the chunks in
   * progress finish, commits what they handled, then leaves the group.
   */
  subscribeBatch(options: SubscribeBatchOptions): Promise<Subscription> {
    const maxBatchSize = Math.max(1, options.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE);
    return this.supervise(options, (commits, stopping) => ({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale, commitOffsetsIfNecessary, uncommittedOffsets }) => {
        for (let start = 0; start < batch.messages.length; start += maxBatchSize) {
          if (!isRunning() || isStale() || stopping.aborted) return;
          const chunk = batch.messages.slice(start, start + maxBatchSize);
          await options.handleBatch(plainBatch(chunk.map((message) => incomingMessage(batch.topic, batch.partition, message))));
          resolveOffset(chunk[chunk.length - 1]!.offset);
          commits.request(() => commitOffsetsIfNecessary(uncommittedOffsets()));
          await heartbeat();
        }
      },
    }));
  }

  /**
   * A supervised consumer: kafkajs rejoins by itself after retriable failures (a broker restart, a
   * rebalance, a loading coordinator); when it gives up for good (a crash it does not restart) the
   * consumer is rebuilt here with backoff, so a subscription only ends when `stop` is called. The
   * first start still fails loudly (a bad broker address at start is the operator's to see).
   */
  private async supervise(
    options: Pick<SubscribeOptions, "topics" | "group" | "fromBeginning">,
    /** The run configuration of one consumer: its background commits, and the signal that the subscription stops. */
    handlerFor: (commits: BackgroundCommit, stopping: AbortSignal) => Pick<ConsumerRunConfig, "autoCommit" | "eachMessage" | "eachBatch" | "eachBatchAutoResolve">,
  ): Promise<Subscription> {
    const log = this.options.log.child({ component: "kafka", group: options.group });
    const health = processReadiness.reporter("dependency", `kafka consumer ${options.group}`);
    health.notReady("joining the group");
    const stopping = new AbortController();
    let current: Consumer | undefined;
    let currentCommits: BackgroundCommit | undefined;
    /** The handler calls in progress (batch subscriptions): stop waits for them before the last commit. */
    const handling = new Set<Promise<void>>();
    let rebuilding = false;

    const startConsumer = async (): Promise<void> => {
      const consumer = this.kafka.consumer({
        groupId: options.group,
        sessionTimeout: 10_000,
        heartbeatInterval: 1_000,
        rebalanceTimeout: 10_000,
        maxWaitTimeInMs: 100,
        retry: {
          ...CONSUMER_RETRY,
          restartOnFailure: async (error) => {
            log.warn({ err: error.message }, "Kafka consumer failed; kafkajs restarts it");
            return !stopping.signal.aborted;
          },
        },
      });
      const commits = new BackgroundCommit((error) => log.warn({ err: (error as Error).message }, "Kafka offset commit failed; the next commit carries the same offsets"));
      const handler = handlerFor(commits, stopping.signal);
      const eachBatch = handler.eachBatch;
      current = consumer;
      currentCommits = commits;
      this.consumers.add(consumer);
      consumer.on(consumer.events.GROUP_JOIN, () => health.ready());
      let lastSignOfLife = Date.now();
      for (const event of [consumer.events.FETCH_START, consumer.events.FETCH, consumer.events.GROUP_JOIN, consumer.events.CRASH]) consumer.on(event, () => (lastSignOfLife = Date.now()));
      const watchdog = setInterval(() => {
        if (stopping.signal.aborted || current !== consumer) return clearInterval(watchdog);
        if (Date.now() - lastSignOfLife < STALL_MS) return;
        clearInterval(watchdog);
        health.notReady("stalled");
        log.error({ silentForMs: Date.now() - lastSignOfLife }, "Kafka consumer stalled (no fetch, join or crash); rebuilding it");
        rebuild(consumer);
      }, 1_000);
      watchdog.unref();
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        health.notReady(payload.error.message);
        if (payload.restart || stopping.signal.aborted || current !== consumer) return;
        log.error({ err: payload.error.message, retryInMs: RESUBSCRIBE_BACKOFF_MS.initial }, "Kafka consumer stopped for good; rebuilding it");
        rebuild(consumer);
      });
      try {
        await consumer.connect();
        for (const topic of options.topics) await consumer.subscribe({ topic, fromBeginning: options.fromBeginning ?? false });
        await consumer.run({
          autoCommitInterval: 1_000,
          partitionsConsumedConcurrently: 8,
          ...handler,
          ...(eachBatch && {
            eachBatch: (payload) => {
              const call = eachBatch(payload);
              handling.add(call);
              return call.finally(() => handling.delete(call));
            },
          }),
        });
      } catch (error) {
        this.consumers.delete(consumer);
        await consumer.disconnect().catch(() => undefined);
        throw error;
      }
    };

    /** A new consumer in place of one kafkajs gave up on, retried with backoff until it runs or the subscription stops. */
    const rebuild = (failed: Consumer) => {
      this.consumers.delete(failed);
      void failed.disconnect().catch(() => undefined);
      if (stopping.signal.aborted || rebuilding) return;
      rebuilding = true;
      sleep(RESUBSCRIBE_BACKOFF_MS.initial, undefined, { signal: stopping.signal })
        .then(() =>
          withRetry(startConsumer, {
            signal: stopping.signal,
            initialDelayMs: RESUBSCRIBE_BACKOFF_MS.initial,
            maxDelayMs: RESUBSCRIBE_BACKOFF_MS.max,
            onRetry: (error, _attempt, retryInMs) => {
              health.notReady((error as Error).message);
              log.warn({ err: (error as Error).message, retryInMs }, "Kafka consumer cannot start yet; retrying");
            },
          }),
        )
        .catch(() => undefined) // stopped
        .finally(() => (rebuilding = false));
    };

    try {
      await startConsumer();
    } catch (error) {
      health.remove();
      throw error;
    }
    return {
      stop: async () => {
        stopping.abort();
        health.remove();
        const consumer = current;
        if (consumer) {
          // The chunks in progress finish (no new one starts), and what they handled is committed
          // before the consumer leaves its group: a clean stop redelivers nothing.
          await Promise.allSettled([...handling]);
          await currentCommits?.flush();
          this.consumers.delete(consumer);
          await consumer.disconnect();
        }
      },
    };
  }

  /** Offsets from the broker through one admin connection kept for it (metrics read this on every scrape). */
  async backlog(topics: readonly string[], group?: string): Promise<PartitionBacklog[]> {
    const admin = await this.readyAdmin();
    const committed = new Map<string, bigint>();
    if (group !== undefined) {
      for (const topic of await admin.fetchOffsets({ groupId: group, topics: [...topics] })) {
        for (const partition of topic.partitions) {
          if (Number(partition.offset) >= 0) committed.set(`${topic.topic}/${partition.partition}`, BigInt(partition.offset));
        }
      }
    }
    const rows: PartitionBacklog[] = [];
    for (const topic of topics) {
      for (const partition of await admin.fetchTopicOffsets(topic)) {
        const offset = committed.get(`${topic}/${partition.partition}`);
        rows.push({ topic, partition: partition.partition, start: BigInt(partition.low), end: BigInt(partition.high), ...(offset !== undefined && { committed: offset }) });
      }
    }
    return rows;
  }

  async close(): Promise<void> {
    if (this.adminReady) await (await this.adminReady.catch(() => undefined))?.disconnect();
    this.adminReady = undefined;
    await Promise.allSettled([...this.consumers].map((consumer) => consumer.disconnect()));
    this.consumers.clear();
    if (this.producerReady) await (await this.producerReady.catch(() => undefined))?.disconnect();
    this.producerReady = undefined;
  }

  private readyAdmin(): Promise<Admin> {
    this.adminReady ??= (async () => {
      const admin = this.kafka.admin();
      await admin.connect();
      return admin;
    })().catch((error: unknown) => {
      this.adminReady = undefined;
      throw error;
    });
    return this.adminReady;
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

function incomingMessage(topic: string, partition: number, message: KafkaMessage): IncomingMessage {
  return {
    topic,
    partition,
    offset: BigInt(message.offset),
    key: message.key?.toString() ?? "",
    value: message.value ?? Buffer.alloc(0),
    headers: decodeHeaders(message.headers),
    timestamp: Number(message.timestamp),
  };
}

function decodeHeaders(headers: Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined): Record<string, string> {
  const decoded: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {})) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) decoded[key] = first.toString();
  }
  return decoded;
}
