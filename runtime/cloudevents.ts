import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampNow } from "@bufbuild/protobuf/wkt";
import { randomUUID } from "node:crypto";
import { CloudEventContextSchema, type CloudEventContext } from "../gen/umw/v1/envelope_pb.js";

/** CloudEvents `type` of each message umw carries. */
export const EVENT_TYPES = {
  createEntity: "dev.umw.command.create_entity.v1",
  updateEntity: "dev.umw.command.update_entity.v1",
  patchEntity: "dev.umw.command.patch_entity.v1",
  deleteEntity: "dev.umw.command.delete_entity.v1",
  entityCreated: "dev.umw.entity.created.v1",
  entityUpdated: "dev.umw.entity.updated.v1",
  entityDeleted: "dev.umw.entity.deleted.v1",
} as const;

export const PROTOBUF_CONTENT_TYPE = "application/protobuf";

export function newEventContext(init: { source: string; type: string; subject: string; traceparent?: string; tracestate?: string; id?: string }): CloudEventContext {
  return create(CloudEventContextSchema, {
    id: init.id ?? randomUUID(),
    source: init.source,
    type: init.type,
    subject: init.subject,
    time: timestampNow(),
    traceparent: init.traceparent ?? "",
    tracestate: init.tracestate ?? "",
  });
}

/** CloudEvents Kafka binding, binary content mode: attributes as `ce_*` headers, payload as the value. */
export function cloudEventHeaders(context: CloudEventContext): Record<string, string> {
  const headers: Record<string, string> = {
    ce_specversion: "1.0",
    ce_id: context.id,
    ce_source: context.source,
    ce_type: context.type,
    ce_subject: context.subject,
    "content-type": PROTOBUF_CONTENT_TYPE,
  };
  if (context.time) headers.ce_time = timestampDate(context.time).toISOString();
  if (context.traceparent) headers.traceparent = context.traceparent;
  if (context.tracestate) headers.tracestate = context.tracestate;
  return headers;
}
