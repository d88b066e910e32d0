import { randomBytes } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { ChangeKind, DomainEventSchema, type DomainEvent } from "../../gen/umw/v1/envelope_pb.js";
import type { EventBus, Subscription } from "../../runtime/bus.js";
import type { Logger } from "../../runtime/logger.js";
import type { EntityReader } from "./reader.js";

export interface L1EventsOptions {
  readonly bus: EventBus;
  /** The entity-events topic (`topicNames(config).entityEvents`). */
  readonly topic: string;
  readonly reader: EntityReader;
  readonly log: Logger;
  /** Prefix of the consumer group (the deployment's topic prefix); the group is unique per instance. */
  readonly groupPrefix?: string;
  /** Called after each event (tests, metrics): whether the L1 took it. */
  readonly onApplied?: (event: DomainEvent, changed: boolean) => void;
}

/**
 * Keeps a QueryService instance's L1 coherent: consumes every domain event (a consumer group of its
 * own, like the realtime hub, from the moment it joins) and hands each entity to
 * `reader.applyEvent`, which takes it only when it is newer than what the L1 holds. Nothing is
 * committed that matters: a redelivered or older event changes nothing.
 */
export async function followDomainEvents(options: L1EventsOptions): Promise<Subscription> {
  const log = options.log.child({ component: "query-l1" });
  const group = `${options.groupPrefix ?? ""}umw-query-l1.${randomBytes(6).toString("base64url")}`;
  const subscription = await options.bus.subscribe({
    topics: [options.topic],
    group,
    fromBeginning: false,
    handle: async (message) => {
      let event: DomainEvent;
      try {
        event = fromBinary(DomainEventSchema, message.value);
      } catch {
        return; // the cache updater logs undecodable events; here they change nothing
      }
      const entity = event.entity;
      if (!entity || !entity.tenant || !entity.type || !entity.id || entity.version <= 0n) return;
      const changed = options.reader.applyEvent(entity, event.kind === ChangeKind.DELETED);
      options.onApplied?.(event, changed);
    },
  });
  log.info({ topic: options.topic, group }, "L1 following domain events");
  return subscription;
}
