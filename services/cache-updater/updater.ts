import { fromBinary } from "@bufbuild/protobuf";
import { ChangeKind, DomainEventSchema, type DomainEvent } from "../../gen/umw/v1/envelope_pb.js";
import type { EventBus, IncomingMessage, MessageBatch, Subscription } from "../../runtime/bus.js";
import type { Logger } from "../../runtime/logger.js";
import type { VersionedWriter } from "../../runtime/cache/versioned-writer.js";

export interface CacheUpdaterDeps {
  readonly bus: EventBus;
  /** Knows each type's `cache.onEvent`: write-through (default) or invalidate. */
  readonly writer: VersionedWriter;
  /** The entity-events topic (`topicNames(config).entityEvents`). */
  readonly topic: string;
  readonly log: Logger;
  readonly group?: string;
  /** Most events of one partition written in one go (default: the bus's, 500). */
  readonly batchSize?: number;
  /** Called with what each event did (metrics, tests). */
  readonly onOutcome?: (outcome: CacheOutcome, message: IncomingMessage) => void;
}

/** What one event did to the cache. */
export type CacheOutcome =
  | { readonly kind: "written" | "invalidated" | "tombstoned"; readonly stored: boolean; readonly version: bigint }
  | { readonly kind: "skipped"; readonly why: string };

export interface CacheUpdater {
  start(): Promise<void>;
  /** Applies one domain event; rejects when the cache is unreachable (the bus then redelivers). */
  handle(message: IncomingMessage): Promise<CacheOutcome>;
  /** Applies consecutive events of one partition at once; outcomes in message order. */
  handleBatch(messages: readonly IncomingMessage[], within?: MessageBatch["within"]): Promise<CacheOutcome[]>;
  stop(): Promise<void>;
}

export const DEFAULT_CACHE_UPDATER_GROUP = "umw-cache-updater";

/**
 * Keeps Redis in step with `umw.entity-events.v1`. No inbox: every write is versioned, so a
 * redelivered event rewrites the same version (a no-op in effect) and an older event arriving after
 * a newer one is refused by the script; the entity version is the dedup key, per entity.
 */
export function createCacheUpdater(deps: CacheUpdaterDeps): CacheUpdater {
  const log = deps.log.child({ component: "cache-updater" });
  const group = deps.group ?? DEFAULT_CACHE_UPDATER_GROUP;
  let subscription: Subscription | undefined;

  async function handle(message: IncomingMessage): Promise<CacheOutcome> {
    let event: DomainEvent;
    try {
      event = fromBinary(DomainEventSchema, message.value);
    } catch (error) {
      // Redelivery cannot fix bytes; the entity's next event (or its TTL) repairs the cache.
      log.error({ partition: message.partition, offset: message.offset.toString(), err: (error as Error).message }, "undecodable domain event skipped");
      return { kind: "skipped", why: "undecodable" };
    }
    const entity = event.entity;
    if (!entity || !entity.tenant || !entity.type || !entity.id || entity.version <= 0n) {
      log.error({ partition: message.partition, offset: message.offset.toString(), eventId: event.context?.id }, "domain event without an entity and version skipped");
      return { kind: "skipped", why: "no entity" };
    }
    const { tenant, type, id, version } = entity;
    if (event.kind === ChangeKind.DELETED) {
      return { kind: "tombstoned", stored: await deps.writer.invalidate(tenant, type, id, version), version };
    }
    return { ...(await deps.writer.apply(entity)), version };
  }

  /**
   * A partition's batch: each entity's events in order, different entities side by side, so the
   * writes of the whole batch leave together (the Redis client pipelines the commands issued in one
   * tick: one round trip for the batch rather than one per event). Any failed write rejects the
   * batch, and the bus delivers it again: rewriting the versions already stored is a no-op.
   */
  async function handleBatch(messages: readonly IncomingMessage[], within: MessageBatch["within"] = (_message, fn) => fn()): Promise<CacheOutcome[]> {
    const outcomes: CacheOutcome[] = new Array(messages.length);
    const byKey = new Map<string, number[]>();
    messages.forEach((message, i) => {
      const lane = byKey.get(message.key);
      if (lane) lane.push(i);
      else byKey.set(message.key, [i]);
    });
    await Promise.all(
      [...byKey.values()].map(async (lane) => {
        // Each event's write and log lines in its own message's trace and request id.
        for (const i of lane) outcomes[i] = await within(messages[i]!, () => handle(messages[i]!));
      }),
    );
    return outcomes;
  }

  return {
    handle,
    handleBatch,
    async start() {
      subscription = await deps.bus.subscribeBatch({
        topics: [deps.topic],
        group,
        // A new group replays what the topic still holds: versioned writes make that harmless, and
        // starting at the end would leave entities changed before the start stale until their TTL.
        fromBeginning: true,
        maxBatchSize: deps.batchSize,
        handleBatch: async (batch) => {
          const outcomes = await handleBatch(batch.messages, batch.within);
          if (deps.onOutcome) batch.messages.forEach((message, i) => batch.within(message, () => deps.onOutcome!(outcomes[i]!, message)));
        },
      });
      log.info({ topic: deps.topic, group }, "cache updater consuming");
    },
    async stop() {
      await subscription?.stop();
      subscription = undefined;
    },
  };
}
