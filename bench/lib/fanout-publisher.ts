// The fan-out bench's publisher: DomainEvents onto the real entity-events topic, as the relay
// publishes them (key tenant/type/id, CloudEvents headers, protobuf value), at a fixed rate, round
// robin over the entities so each gets the same count, each carrying its publish time (wall clock,
// sub-millisecond) in the entity data as `publishedAt`.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { ChangeKind, DomainEventSchema } from "../../gen/umw/v1/envelope_pb.js";
import type { OutgoingMessage } from "../../runtime/bus.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { entityKey } from "../../runtime/entity.js";
import type { KafkaBus } from "../../runtime/kafka-bus.js";

export const wallNow = () => performance.timeOrigin + performance.now();

export function domainEvent(tenant: string, type: string, id: string, version: number, data: JsonObject): OutgoingMessage {
  const key = entityKey(tenant, type, id);
  const context = newEventContext({ source: "umw/bench-fanout", type: version === 1 ? EVENT_TYPES.entityCreated : EVENT_TYPES.entityUpdated, subject: key });
  const event = create(DomainEventSchema, {
    context,
    commandId: randomUUID(),
    kind: version === 1 ? ChangeKind.CREATED : ChangeKind.UPDATED,
    entity: { tenant, type, id, version: BigInt(version), data },
  });
  return { key, value: toBinary(DomainEventSchema, event), headers: cloudEventHeaders(context) };
}

export interface PublishPlan {
  readonly bus: KafkaBus;
  readonly topic: string;
  readonly tenant: string;
  readonly type: string;
  readonly entityIds: readonly string[];
  /** Events per second. */
  readonly rate: number;
  readonly durationMs: number;
  /** At most one send per this many ms (everything due goes in it), as a relay batches; default 5. */
  readonly batchMs?: number;
  /** The last version published per entity so far (a previous phase); versions continue from there. */
  readonly versions?: Int32Array;
  /** Called about once a second with the count so far. */
  readonly onSecond?: (published: number, elapsedMs: number) => void;
}

export interface Published {
  readonly published: number;
  /** The last version published per entity (versions start at 1), this phase and those before. */
  readonly versions: Int32Array;
  readonly elapsedMs: number;
  /** Events behind schedule at the worst moment (the producer could not keep the rate). */
  readonly maxBehind: number;
  /** Duration of each send (one batch, acks=all), ms. */
  readonly sendMs: number[];
}

/** Publishes rate × duration events; every `batchMs` sends everything due by then as one batch. */
export async function publishAtRate(plan: PublishPlan): Promise<Published> {
  const total = Math.round((plan.rate * plan.durationMs) / 1000);
  const versions = plan.versions ? Int32Array.from(plan.versions) : new Int32Array(plan.entityIds.length);
  const sendMs: number[] = [];
  let published = 0;
  let maxBehind = 0;
  let nextSecond = 1000;
  const started = performance.now();
  const batchMs = plan.batchMs ?? 5;
  let lastSend = -Infinity;
  while (published < total) {
    const sinceSend = performance.now() - lastSend;
    if (sinceSend < batchMs) await sleep(Math.ceil(batchMs - sinceSend));
    const elapsed = performance.now() - started;
    const due = Math.min(total, Math.floor((elapsed * plan.rate) / 1000));
    if (due <= published) {
      await sleep(Math.max(1, Math.ceil(((published + 1) * 1000) / plan.rate - elapsed)));
      continue;
    }
    lastSend = performance.now();
    maxBehind = Math.max(maxBehind, due - published);
    const batch: OutgoingMessage[] = [];
    const publishedAt = wallNow();
    for (let n = published; n < due; n++) {
      const index = n % plan.entityIds.length;
      const version = ++versions[index]!;
      batch.push(domainEvent(plan.tenant, plan.type, plan.entityIds[index]!, version, { publishedAt, n }));
    }
    const sendStarted = performance.now();
    await plan.bus.publish(plan.topic, batch);
    sendMs.push(performance.now() - sendStarted);
    published = due;
    if (plan.onSecond && elapsed >= nextSecond) {
      plan.onSecond(published, elapsed);
      nextSecond += 1000;
    }
  }
  return { published, versions, elapsedMs: performance.now() - started, maxBehind, sendMs };
}
