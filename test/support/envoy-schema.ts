import { existsSync } from "node:fs";
import { join } from "node:path";
import protobuf from "protobufjs";

const DEPS = "node_modules/@grpc/grpc-js-xds/deps";
const INCLUDE = [`${DEPS}/envoy-api`, `${DEPS}/xds`, `${DEPS}/googleapis`, `${DEPS}/protoc-gen-validate`, "node_modules/google-proto-files"];

/** Envoy's API protos as shipped by @grpc/grpc-js-xds, loaded with protobufjs. */
export function loadEnvoyProtos(files: readonly string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of INCLUDE) {
      const path = join(dir, target);
      if (existsSync(path)) return path;
    }
    return target;
  };
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}

/** Well-known types whose JSON/YAML form is not an object of their fields. */
const SCALAR_FORMS = new Set([
  "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.Struct", "google.protobuf.Value",
  "google.protobuf.ListValue", "google.protobuf.UInt32Value", "google.protobuf.UInt64Value", "google.protobuf.Int32Value",
  "google.protobuf.Int64Value", "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.DoubleValue",
  "google.protobuf.FloatValue", "google.protobuf.BytesValue",
]);

/**
 * Checks a YAML/JSON config object against a protobuf message type the way Envoy's strict loader
 * does for names: every field must exist (proto or JSON name), enums must name a value, and every
 * `Any` must name a loaded type whose fields are checked in turn. Returns the problems found.
 */
export function checkAgainstProto(root: protobuf.Root, typeName: string, value: unknown, path = "$"): string[] {
  const type = root.lookupType(typeName);
  const fullName = type.fullName.slice(1);
  if (SCALAR_FORMS.has(fullName)) return [];
  if (fullName === "google.protobuf.Any") {
    const object = value as Record<string, unknown>;
    const url = object?.["@type"];
    if (typeof url !== "string") return [`${path}: Any without @type`];
    const { "@type": _, ...rest } = object;
    const target = url.slice(url.lastIndexOf("/") + 1);
    if (!root.lookup(target)) return [`${path}: unknown type ${target}`];
    return checkAgainstProto(root, target, rest, `${path}<${target}>`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return [`${path}: expected an object for ${fullName}`];
  const problems: string[] = [];
  const fields = new Map<string, protobuf.Field>();
  for (const field of type.fieldsArray) {
    fields.set(field.name, field);
    fields.set(protobuf.util.camelCase(field.name), field);
  }
  for (const [key, child] of Object.entries(value)) {
    const field = fields.get(key);
    if (!field) {
      problems.push(`${path}.${key}: no such field in ${fullName}`);
      continue;
    }
    const items = field.repeated ? (Array.isArray(child) ? child : [Symbol.for("not-a-list")]) : field.map ? Object.values(child as object) : [child];
    if (field.repeated && !Array.isArray(child)) {
      problems.push(`${path}.${key}: expected a list`);
      continue;
    }
    items.forEach((item, index) => {
      const at = field.repeated ? `${path}.${key}[${index}]` : `${path}.${key}`;
      if (field.resolvedType instanceof protobuf.Type) {
        problems.push(...checkAgainstProto(root, field.resolvedType.fullName.slice(1), item, at));
      } else if (field.resolvedType instanceof protobuf.Enum) {
        if (typeof item === "string" && !(item in field.resolvedType.values)) problems.push(`${at}: ${item} is not a value of ${field.resolvedType.name}`);
      }
    });
  }
  return problems;
}
