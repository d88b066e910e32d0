import { fromBinary } from "@bufbuild/protobuf";
import { ChangeKind, DomainEventSchema } from "../../gen/umw/v1/envelope_pb.js";
import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import type { IncomingMessage } from "../../runtime/bus.js";
import { entityKey } from "../../runtime/entity.js";

/**
 * One domain event as the hub keeps it: decoded once, shared by the history ring and by every
 * stream it is delivered to.
 */
export interface HubEvent {
  readonly partition: number;
  readonly offset: number;
  /** Message id (CloudEvents id), to drop a relay's re-sends. */
  readonly id: string;
  /** tenant/type/id: the Kafka key and the index key of entity subscriptions. */
  readonly key: string;
  /** tenant/type: the index key of type subscriptions. */
  readonly typeKey: string;
  readonly kind: ChangeKind;
  readonly version: number;
  readonly entity: Entity;
  /** When the hub received it (performance.now()), for latency figures. */
  readonly receivedAt: number;
  /**
   * Field `change` of SubscribeResponse as it goes on the wire (change-wire.ts), encoded on first
   * delivery and shared by every stream it goes to; the conflated variant separately.
   */
  wire?: Buffer;
  wireConflated?: Buffer;
  /** The last whole response built from `wire` and the position it carries: the next stream at that position sends the same bytes. */
  response?: Buffer;
  responsePosition?: string;
}

export function typeKey(tenant: string, type: string): string {
  return `${tenant}/${type}`;
}

/** Decodes a DomainEvent message; undefined when it does not carry an entity (nothing to deliver). */
export function decodeEvent(message: IncomingMessage, receivedAt: number): HubEvent | undefined {
  const event = fromBinary(DomainEventSchema, message.value);
  const entity = event.entity;
  if (!entity || !entity.tenant || !entity.type || !entity.id) return undefined;
  return {
    partition: message.partition,
    offset: Number(message.offset),
    id: message.headers.ce_id || event.context?.id || `${message.partition}:${message.offset}`,
    key: entityKey(entity.tenant, entity.type, entity.id),
    typeKey: typeKey(entity.tenant, entity.type),
    kind: event.kind === ChangeKind.UNSPECIFIED ? ChangeKind.UPDATED : event.kind,
    version: Number(entity.version),
    entity,
    receivedAt,
  };
}
