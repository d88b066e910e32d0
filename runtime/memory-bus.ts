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

interface Partition {
  readonly log: IncomingMessage[];
}

interface Group {
  /** Next offset to deliver, per topic and partition. */
  readonly next: Map<string, number[]>;
  readonly members: Set<Member>;
}

interface Member {
  readonly topics: readonly string[];
  /** Most messages of one partition per delivery. */
  readonly maxBatchSize: number;
  /** Handles consecutive messages of one partition; the offset moves past them all when it resolves. */
  readonly deliver: (messages: readonly IncomingMessage[]) => Promise<void>;
  stopped: boolean;
  wake: () => void;
}

/**
 * In-process EventBus for the embedded demo and unit tests: partitioned, ordered per key, offsets
 * per group. Not durable: everything is gone when the process ends.
 */
export class MemoryBus implements EventBus {
  private readonly topics = new Map<string, Partition[]>();
  private readonly groups = new Map<string, Group>();

  async ensureTopics(topics: readonly TopicSpec[]): Promise<void> {
    for (const topic of topics) {
      if (!this.topics.has(topic.name)) this.topics.set(topic.name, Array.from({ length: topic.partitions }, () => ({ log: [] })));
    }
  }

  async publish(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    const partitions = this.topics.get(topic);
    if (!partitions) throw new Error(`topic ${topic} does not exist`);
    for (const message of messages) {
      const partition = partitionOf(message.key, partitions.length);
      const { log } = partitions[partition]!;
      log.push({ topic, partition, offset: BigInt(log.length), key: message.key, value: message.value, headers: { ...message.headers }, timestamp: Date.now() });
    }
    for (const group of this.groups.values()) for (const member of group.members) member.wake();
  }

  subscribe(options: SubscribeOptions): Promise<Subscription> {
    return this.join(options, { topics: options.topics, maxBatchSize: 1, deliver: (messages) => options.handle(messages[0]!) });
  }

  subscribeBatch(options: SubscribeBatchOptions): Promise<Subscription> {
    const maxBatchSize = Math.max(1, options.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE);
    return this.join(options, { topics: options.topics, maxBatchSize, deliver: (messages) => options.handleBatch(plainBatch(messages)) });
  }

  private async join(options: Pick<SubscribeOptions, "topics" | "group" | "fromBeginning">, delivery: Pick<Member, "topics" | "maxBatchSize" | "deliver">): Promise<Subscription> {
    let group = this.groups.get(options.group);
    if (!group) this.groups.set(options.group, (group = { next: new Map(), members: new Set() }));
    for (const topic of options.topics) {
      const partitions = this.topics.get(topic);
      if (!partitions) throw new Error(`topic ${topic} does not exist`);
      if (!group.next.has(topic)) group.next.set(topic, partitions.map((p) => (options.fromBeginning ? 0 : p.log.length)));
    }
    const member: Member = { ...delivery, stopped: false, wake: () => undefined };
    group.members.add(member);
    void this.pump(group, member);
    return {
      stop: async () => {
        member.stopped = true;
        member.wake();
        group.members.delete(member);
      },
    };
  }

  async backlog(topics: readonly string[], group?: string): Promise<PartitionBacklog[]> {
    const next = group === undefined ? undefined : this.groups.get(group)?.next;
    return topics.flatMap((topic) =>
      (this.topics.get(topic) ?? []).map((partition, p): PartitionBacklog => {
        const committed = next?.get(topic)?.[p];
        return { topic, partition: p, start: 0n, end: BigInt(partition.log.length), ...(committed !== undefined && { committed: BigInt(committed) }) };
      }),
    );
  }

  async close(): Promise<void> {
    for (const group of this.groups.values()) for (const member of group.members) member.stopped = true;
  }

  /** One member delivers everything of its group, a partition's waiting messages at once up to maxBatchSize; a rejected delivery is retried after a pause. */
  private async pump(group: Group, member: Member): Promise<void> {
    while (!member.stopped) {
      let delivered = false;
      for (const topic of member.topics) {
        const next = group.next.get(topic)!;
        const partitions = this.topics.get(topic)!;
        for (let p = 0; p < partitions.length; p++) {
          const messages = partitions[p]!.log.slice(next[p]!, next[p]! + member.maxBatchSize);
          if (messages.length === 0) continue;
          try {
            await member.deliver(messages);
            next[p] = next[p]! + messages.length;
            delivered = true;
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
          if (member.stopped) return;
        }
      }
      if (!delivered) await new Promise<void>((resolve) => (member.wake = resolve));
    }
  }
}

/** Same idea as Kafka's default partitioner: a stable hash of the key, modulo the partitions. */
export function partitionOf(key: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % partitions;
}
