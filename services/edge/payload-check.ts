import type { DescMessage, JsonObject, Message } from "@bufbuild/protobuf";
import { checkMaskPath, checkPayload, type PayloadLimits } from "../command/payload-limits.js";

/**
 * The payload limits (runtime/config.ts payloadMaxDepth, payloadMaxBytes) on every top-level
 * google.protobuf.Struct of a request (the entity `data` of a write), checked before the request
 * is forwarded: a payload the services behind could not decode or store is a 400 here, with the
 * same ErrorInfo reason CommandService gives (PAYLOAD_TOO_DEEP, INVALID_UNICODE, RESERVED_KEY, ...).
 * Every google.protobuf.FieldMask (the update_mask of a patch) is checked for reserved segments
 * (`__proto__`, `constructor`, `prototype`) the same way.
 */
export function checkRequestPayloads(schema: DescMessage, request: Message, limits: PayloadLimits): void {
  for (const field of schema.fields) {
    if (field.fieldKind !== "message") continue;
    const typeName = field.message.typeName;
    if (typeName !== "google.protobuf.Struct" && typeName !== "google.protobuf.FieldMask") continue;
    const value = (request as unknown as Record<string, unknown>)[field.localName];
    if (value === undefined || value === null) continue;
    if (typeName === "google.protobuf.Struct") checkPayload(value as JsonObject, limits, field.jsonName);
    else for (const path of (value as { paths: string[] }).paths) checkMaskPath(path, field.jsonName);
  }
}
