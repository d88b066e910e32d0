import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { invalidArgument } from "../../runtime/errors.js";
import { isReservedKey, reservedSegment } from "../../runtime/reserved-keys.js";

/**
 * The one limit on an entity payload (runtime/config.ts payloadMaxDepth / payloadMaxBytes): the
 * edge checks it before forwarding, CommandService again before accepting, so what is accepted can
 * be decoded by every protobuf decoder on the way (protobuf-es stops at 100 nested messages) and
 * fits a Kafka message.
 */
export interface PayloadLimits {
  /** Nesting depth of objects and arrays; `{}` is 1, `{"a":{}}` is 2. */
  readonly maxDepth: number;
  /** Size of the payload encoded as google.protobuf.Struct. */
  readonly maxBytes: number;
}

export const DEFAULT_PAYLOAD_LIMITS: PayloadLimits = { maxDepth: 32, maxBytes: 262_144 };

/**
 * Refuses (INVALID_ARGUMENT, with an ErrorInfo reason naming the field) what Postgres jsonb or the
 * protobuf decoders would refuse later, after a 202:
 * - PAYLOAD_TOO_DEEP, PAYLOAD_TOO_LARGE: over the limits;
 * - INVALID_CHARACTER: U+0000 in a key or string (jsonb cannot store it);
 * - INVALID_UNICODE: a lone surrogate (`"\ud800"`; not UTF-8, jsonb refuses the escape);
 * - NUMBER_OUT_OF_RANGE: a number that is not finite (`1e400` parses as Infinity);
 * - RESERVED_KEY: a key `__proto__`, `constructor` or `prototype` (runtime/reserved-keys.ts).
 */
export function checkPayload(data: JsonObject, limits: PayloadLimits, field = "data"): void {
  const size = objectSize(data, 1, field, limits);
  if (size > limits.maxBytes) {
    throw invalidArgument("PAYLOAD_TOO_LARGE", `${field} is ${size} bytes encoded; the limit is ${limits.maxBytes}`, {
      field,
      size: String(size),
      max_bytes: String(limits.maxBytes),
    });
  }
}

/** RESERVED_KEY when an update_mask path has a segment `__proto__`, `constructor` or `prototype`. */
export function checkMaskPath(path: string, field = "update_mask"): void {
  const segment = reservedSegment(path);
  if (segment !== undefined) {
    throw invalidArgument("RESERVED_KEY", `${field} path ${JSON.stringify(path)} names the reserved member ${JSON.stringify(segment)}`, { field });
  }
}

/** The size of `data` encoded as google.protobuf.Struct; nothing is checked. */
export function structSize(data: JsonObject): number {
  return objectSize(data, 1, "data", UNCHECKED);
}

/** Limits that only measure: no depth bound, and strings and numbers are not checked. */
const UNCHECKED: PayloadLimits = { maxDepth: Infinity, maxBytes: Infinity };

// Sizes of the protobuf encoding of Struct (field 1: map<string, Value>), ListValue (field 1:
// repeated Value) and Value (a oneof: 1 null, 2 double, 3 string, 4 bool, 5 Struct, 6 ListValue).

function objectSize(object: JsonObject, depth: number, path: string, limits: PayloadLimits): number {
  if (depth > limits.maxDepth) throw tooDeep(path, limits);
  let size = 0;
  for (const [key, value] of Object.entries(object)) {
    const at = memberPath(path, key);
    if (limits !== UNCHECKED) {
      checkString(key, at, "key");
      if (isReservedKey(key)) throw invalidArgument("RESERVED_KEY", `${at}: the key ${JSON.stringify(key)} is reserved`, { field: at });
    }
    const keyBytes = Buffer.byteLength(key, "utf8");
    const valueBytes = valueSize(value, depth, at, limits);
    const entry = 1 + varintSize(keyBytes) + keyBytes + 1 + varintSize(valueBytes) + valueBytes;
    size += 1 + varintSize(entry) + entry;
  }
  return size;
}

function listSize(list: readonly JsonValue[], depth: number, path: string, limits: PayloadLimits): number {
  if (depth > limits.maxDepth) throw tooDeep(path, limits);
  let size = 0;
  for (let i = 0; i < list.length; i++) {
    const valueBytes = valueSize(list[i]!, depth, `${path}[${i}]`, limits);
    size += 1 + varintSize(valueBytes) + valueBytes;
  }
  return size;
}

/** A Value holding `value`, whose container is at `depth`. */
function valueSize(value: JsonValue, depth: number, path: string, limits: PayloadLimits): number {
  if (value === null) return 2;
  switch (typeof value) {
    case "number":
      if (limits !== UNCHECKED && !Number.isFinite(value)) {
        throw invalidArgument("NUMBER_OUT_OF_RANGE", `${path}: numbers must be finite doubles (about ±1.8e308)`, { field: path });
      }
      return 9;
    case "boolean":
      return 2;
    case "string": {
      if (limits !== UNCHECKED) checkString(value, path, "string");
      const bytes = Buffer.byteLength(value, "utf8");
      return 1 + varintSize(bytes) + bytes;
    }
    default: {
      const inner = Array.isArray(value) ? listSize(value, depth + 1, path, limits) : objectSize(value as JsonObject, depth + 1, path, limits);
      return 1 + varintSize(inner) + inner;
    }
  }
}

/** With the u flag a pair is one code point: only an unpaired half matches. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function checkString(text: string, path: string, what: "key" | "string"): void {
  if (text.includes("\u0000")) {
    throw invalidArgument("INVALID_CHARACTER", `${path}: a ${what} may not contain U+0000 (NUL)`, { field: path });
  }
  if (LONE_SURROGATE.test(text)) {
    throw invalidArgument("INVALID_UNICODE", `${path}: a ${what} holds a lone surrogate, which is not Unicode text`, { field: path });
  }
}

function tooDeep(path: string, limits: PayloadLimits) {
  return invalidArgument("PAYLOAD_TOO_DEEP", `${path}: objects and arrays may nest at most ${limits.maxDepth} deep`, {
    field: path,
    max_depth: String(limits.maxDepth),
  });
}

function memberPath(path: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}
