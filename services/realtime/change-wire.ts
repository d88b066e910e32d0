import { create, toBinary } from "@bufbuild/protobuf";
import { EntityChangeSchema, SubscribeResponseSchema } from "../../gen/umw/v1/realtime_pb.js";
import type { HubEvent } from "./events.js";

/**
 * A change as it goes on the wire: the bytes of a `SubscribeResponse{change, position}`, put
 * together from two pieces encoded once each instead of once per subscriber. The `change` field
 * (tag, length, EntityChange) is encoded once per event (and once more for its conflated variant)
 * and kept on the event; the `position` field once per position token (every stream that has
 * nothing else pending shares the hub's head token). A delivery then costs one buffer: the two
 * pieces copied side by side, which grpc-js frames and writes as they are.
 */

const LENGTH_DELIMITED = 2;
const CHANGE_TAG = (SubscribeResponseSchema.field.change!.number << 3) | LENGTH_DELIMITED;
const POSITION_TAG = (SubscribeResponseSchema.field.position!.number << 3) | LENGTH_DELIMITED;

function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value >>>= 7;
    length++;
  }
  return length;
}

function writeVarint(target: Buffer, offset: number, value: number): number {
  while (value >= 0x80) {
    target[offset++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  target[offset++] = value;
  return offset;
}

/** A length-delimited field: tag (one byte for the fields used here), length, payload. */
function field(tag: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(1 + varintLength(payload.length) + payload.length);
  out[0] = tag;
  out.set(payload, writeVarint(out, 1, payload.length));
  return out;
}

/** Field `change` of SubscribeResponse for this event; the same bytes for every stream it goes to. */
export function changeField(event: HubEvent, conflated: boolean): Buffer {
  return field(CHANGE_TAG, toBinary(EntityChangeSchema, create(EntityChangeSchema, { kind: event.kind, entity: event.entity, conflated })));
}

/** Field `position` of SubscribeResponse. */
export function positionField(token: string): Buffer {
  return field(POSITION_TAG, Buffer.from(token, "utf8"));
}

/** The SubscribeResponse bytes: the change, then the position (field order as protobuf writes them). */
export function changeResponse(change: Buffer, position: Buffer): Buffer {
  const out = Buffer.allocUnsafe(change.length + position.length);
  change.copy(out, 0);
  position.copy(out, change.length);
  return out;
}
