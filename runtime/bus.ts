/** A message to publish: the key fixes the partition, so one entity's messages keep their order. */
export interface OutgoingMessage {
  readonly key: string;
  readonly value: Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface IncomingMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly key: string;
  readonly value: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  /** Broker timestamp, ms since the epoch. */
  readonly timestamp: number;
}

export interface TopicSpec {
  readonly name: string;
  readonly partitions: number;
}

export interface SubscribeOptions {
  readonly topics: readonly string[];
  /** Consumers of one group share the partitions; each group sees every message. */
  readonly group: string;
  /** Where a group with no committed offset starts: the oldest message, or only new ones. */
  readonly fromBeginning?: boolean;
  /**
   * Called once per message, in order within a partition. The offset is committed only after the
   * returned promise resolves; a rejection stops the partition and redelivers the message.
   */
  readonly handle: (message: IncomingMessage) => Promise<void>;
}

/** Where a partition stands: its first and next offsets and, for a consumer group, its committed offset. */
export interface PartitionBacklog {
  readonly topic: string;
  readonly partition: number;
  /** Offset of the oldest message still held (retention moves it). */
  readonly start: bigint;
  /** Offset the next published message will get. */
  readonly end: bigint;
  /** The group's committed offset (the next message it will handle); undefined when it has none. */
  readonly committed?: bigint;
}

/** The messages a batch subscription hands over at once: consecutive messages of ONE partition, in order. */
export interface MessageBatch {
  readonly messages: readonly IncomingMessage[];
  /**
   * Runs fn in the context of one message of the batch: where the bus adds one (runtime/message-tracing.ts),
   * that message's consumer span and request id, so what fn writes continues the message's trace.
   */
  within<T>(message: IncomingMessage, fn: () => T): T;
}

export interface SubscribeBatchOptions {
  readonly topics: readonly string[];
  readonly group: string;
  readonly fromBeginning?: boolean;
  /** Most messages in one call (default 500); a longer run of a partition comes in several calls. */
  readonly maxBatchSize?: number;
  /**
   * Called with a partition's waiting messages; batches of different partitions may run at the
   * same time, batches of one partition never. The offsets of the whole batch are committed only
   * after the returned promise resolves; a rejection redelivers the batch from its first message.
   */
  readonly handleBatch: (batch: MessageBatch) => Promise<void>;
}

/** A batch whose messages need no context of their own (the adapters' default). */
export function plainBatch(messages: readonly IncomingMessage[]): MessageBatch {
  return { messages, within: (_message, fn) => fn() };
}

export const DEFAULT_MAX_BATCH_SIZE = 500;

export interface Subscription {
  stop(): Promise<void>;
}

/**
 * The message bus port. Delivery is at least once; consumers make the effect exactly once by
 * deduplicating on the message id in the same transaction as the effect.
 */
export interface EventBus {
  /** Creates missing topics; existing ones are left as they are. */
  ensureTopics(topics: readonly TopicSpec[]): Promise<void>;
  /** Resolves once every replica the broker requires has the messages (acks=all). */
  publish(topic: string, messages: readonly OutgoingMessage[]): Promise<void>;
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  /** Per partition of `topics`: the offsets held and, with `group`, that group's committed offset. */
  backlog?(topics: readonly string[], group?: string): Promise<PartitionBacklog[]>;
  /** Like subscribe, but hands over a partition's waiting messages at once (one transaction per batch). */
  subscribeBatch(options: SubscribeBatchOptions): Promise<Subscription>;
  close(): Promise<void>;
}
