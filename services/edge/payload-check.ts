import type { DescMessage, JsonObject, Message } from "@bufbuild/protobuf";
import { checkPayload, type PayloadLimits } from "../command/payload-limits.js";

/**
 * The payload limits (runtime/config.ts payloadMaxDepth, payloadMaxBytes) on every top-level
 * google.protobuf.Struct of a request (the entity `data` of a write), checked before the request
 * is forwarded: a payload the services behind could not decode or store is a 400 here, with the
 * same ErrorInfo reason CommandService gives (PAYLOAD_TOO_DEEP, INVALID_UNICODE, ...).
 */
export function checkRequestPayloads(schema: DescMessage, request: Message, limits: PayloadLimits): void {
  for (const field of schema.fields) {
    if (field.fieldKind !== "message" || field.message.typeName !== "google.protobuf.Struct") continue;
    const value = (request as unknown as Record<string, unknown>)[field.localName];
    if (value === undefined || value === null) continue;
    checkPayload(value as JsonObject, limits, field.jsonName);
  }
}
