import { fromJson, ScalarType, type DescEnum, type DescField, type DescMessage, type JsonValue } from "@bufbuild/protobuf";

/** A path or query parameter whose text is not a value of its field's type. */
export class FieldTextError extends Error {
  override readonly name = "FieldTextError";
}

/** Field lookup by proto name or JSON name, per message, built on first use. */
const fieldsByName = new WeakMap<DescMessage, Map<string, DescField>>();

export function findField(message: DescMessage, name: string): DescField | undefined {
  let byName = fieldsByName.get(message);
  if (!byName) {
    byName = new Map();
    for (const field of message.fields) {
      byName.set(field.jsonName, field);
      byName.set(field.name, field);
    }
    fieldsByName.set(message, byName);
  }
  return byName.get(name);
}

/**
 * Resolves a dotted field path (`a.b.c`, proto or JSON names) to its chain of fields. Every field
 * but the last must be a singular message field. Undefined when a name is unknown.
 */
export function resolveFieldPath(message: DescMessage, path: string): DescField[] | undefined {
  const chain: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const name of path.split(".")) {
    if (!current) return undefined;
    const field = findField(current, name);
    if (!field) return undefined;
    chain.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return chain;
}

export function fieldPathName(chain: readonly DescField[]): string {
  return chain.map((field) => field.name).join(".");
}

/**
 * Converts the text of one path or query parameter to the proto3 JSON value of the field (or of
 * one element, for a repeated field), so that `fromJson` builds the message. Follows grpc-gateway:
 * numbers in decimal, booleans as Go's ParseBool, enums by name or number, bytes in base64,
 * Timestamp / Duration / FieldMask and the wrapper types in their JSON string forms.
 */
export function fieldTextToJson(field: DescField, text: string): JsonValue {
  switch (field.fieldKind) {
    case "scalar":
      return scalarTextToJson(field.scalar, text);
    case "enum":
      return enumTextToJson(field.enum, text);
    case "message":
      return messageTextToJson(field.message, text);
    case "list":
      if (field.listKind === "scalar") return scalarTextToJson(field.scalar, text);
      if (field.listKind === "enum") return enumTextToJson(field.enum, text);
      return messageTextToJson(field.message, text);
    case "map":
      throw new FieldTextError("map fields cannot be set from the URL");
  }
}

const INT = /^-?\d+$/;
const UINT = /^\d+$/;
const BASE64 = /^[A-Za-z0-9+/\-_]*={0,2}$/;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

function scalarTextToJson(type: ScalarType, text: string): JsonValue {
  switch (type) {
    case ScalarType.STRING:
      return text;
    case ScalarType.BOOL:
      return parseBool(text);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return integer(text, INT, INT32_MIN, INT32_MAX, "int32");
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return integer(text, UINT, 0, UINT32_MAX, "uint32");
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return integer64(text, INT, INT64_MIN, INT64_MAX, "int64");
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return integer64(text, UINT, 0n, UINT64_MAX, "uint64");
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT: {
      if (text === "NaN" || text === "Infinity" || text === "-Infinity") return text;
      const value = text.trim() === "" ? NaN : Number(text);
      if (!Number.isFinite(value)) throw new FieldTextError(`${JSON.stringify(text)} is not a number`);
      return value;
    }
    case ScalarType.BYTES:
      if (!BASE64.test(text)) throw new FieldTextError(`${JSON.stringify(text)} is not base64`);
      return text;
  }
}

function parseBool(text: string): boolean {
  switch (text) {
    case "true": case "True": case "TRUE": case "t": case "T": case "1":
      return true;
    case "false": case "False": case "FALSE": case "f": case "F": case "0":
      return false;
    default:
      throw new FieldTextError(`${JSON.stringify(text)} is not a boolean`);
  }
}

function integer(text: string, pattern: RegExp, min: number, max: number, type: string): number {
  const value = pattern.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) throw new FieldTextError(`${JSON.stringify(text)} is not a valid ${type}`);
  return value;
}

function integer64(text: string, pattern: RegExp, min: bigint, max: bigint, type: string): string {
  if (!pattern.test(text)) throw new FieldTextError(`${JSON.stringify(text)} is not a valid ${type}`);
  const value = BigInt(text);
  if (value < min || value > max) throw new FieldTextError(`${JSON.stringify(text)} is out of range for ${type}`);
  return value.toString();
}

function enumTextToJson(desc: DescEnum, text: string): JsonValue {
  if (desc.values.some((value) => value.name === text)) return text;
  if (INT.test(text)) {
    const number = Number(text);
    if (number >= INT32_MIN && number <= INT32_MAX) return number;
  }
  throw new FieldTextError(`${JSON.stringify(text)} is not a value of ${desc.typeName}`);
}

const STRING_FORM_TYPES = new Set(["google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"]);
const WRAPPER_TYPES = new Set([
  "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value", "google.protobuf.UInt64Value",
  "google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.BoolValue", "google.protobuf.StringValue",
  "google.protobuf.BytesValue",
]);

function messageTextToJson(desc: DescMessage, text: string): JsonValue {
  if (WRAPPER_TYPES.has(desc.typeName)) return fieldTextToJson(desc.fields[0]!, text);
  if (STRING_FORM_TYPES.has(desc.typeName)) {
    try {
      fromJson(desc, text);
    } catch (error) {
      throw new FieldTextError(`${JSON.stringify(text)} is not a valid ${desc.typeName}: ${(error as Error).message}`);
    }
    return text;
  }
  throw new FieldTextError(`${desc.typeName} fields cannot be set from the URL`);
}
