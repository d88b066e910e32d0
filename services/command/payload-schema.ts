import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { invalidArgument, notFound } from "../../runtime/errors.js";
import type { Logger } from "../../runtime/logger.js";
import type { Resources } from "../../runtime/resources.js";

/** Whole payloads (create, update) or merge patches (patch: no `required`, null removes a field). */
export type PayloadKind = "full" | "patch";

interface Validators {
  readonly full: ValidateFunction;
  readonly patch: ValidateFunction;
}

/**
 * The JSON Schema of every configured resource type, compiled once at start (a schema that does
 * not compile stops the service with its type named).
 */
export class PayloadSchemas {
  private readonly validators = new Map<string, Validators>();

  constructor(resources: Resources, log: Logger) {
    const ajv = new Ajv2020({
      allErrors: true,
      strict: false,
      logger: { log: (...args: unknown[]) => log.debug({ args }, "ajv"), warn: (...args: unknown[]) => log.warn({ args }, "ajv"), error: (...args: unknown[]) => log.error({ args }, "ajv") },
    });
    for (const [type, resource] of Object.entries(resources)) {
      try {
        this.validators.set(type, { full: ajv.compile(resource.schema), patch: ajv.compile(withoutRequired(resource.schema) as object) });
      } catch (error) {
        throw new Error(`resource type ${type}: its JSON Schema does not compile: ${(error as Error).message}`);
      }
    }
  }

  /** NOT_FOUND UNKNOWN_RESOURCE_TYPE unless the type is configured. */
  checkType(type: string): void {
    if (!this.validators.has(type)) throw notFound("UNKNOWN_RESOURCE_TYPE", `no resource type ${JSON.stringify(type)} is configured`, { type });
  }

  /** INVALID_ARGUMENT SCHEMA_VIOLATION naming every offending field (`data.a.b[2]`). */
  validate(type: string, kind: PayloadKind, data: JsonObject): void {
    this.checkType(type);
    const validator = this.validators.get(type)![kind];
    const payload = kind === "patch" ? withoutNulls(data) : data;
    if (validator(payload)) return;
    const violations = (validator.errors ?? []).map(violation);
    const fields = [...new Set(violations.map((v) => v.field))];
    throw invalidArgument(
      "SCHEMA_VIOLATION",
      `payload does not match the schema of ${type}: ${violations.map((v) => `${v.field}: ${v.message}`).join("; ")}`,
      { type, fields: fields.join(","), violations: JSON.stringify(violations) },
    );
  }
}

interface Violation {
  readonly field: string;
  readonly message: string;
}

function violation(error: ErrorObject): Violation {
  const segments = error.instancePath.split("/").slice(1).map((segment) => segment.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (error.keyword === "required") segments.push(String((error.params as { missingProperty: string }).missingProperty));
  if (error.keyword === "additionalProperties") segments.push(String((error.params as { additionalProperty: string }).additionalProperty));
  let field = "data";
  for (const segment of segments) field += /^\d+$/.test(segment) ? `[${segment}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`;
  return { field, message: error.message ?? error.keyword };
}

/** The schema a merge patch must match: the same, minus every `required` list. */
function withoutRequired(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutRequired);
  if (schema === null || typeof schema !== "object") return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === "required" && Array.isArray(value)) continue;
    out[key] = withoutRequired(value);
  }
  return out;
}

/** RFC 7396: a null member removes the field, so it is not a value to validate. */
function withoutNulls(value: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, item] of Object.entries(value)) {
    if (item === null) continue;
    out[key] = isObject(item) ? withoutNulls(item) : item;
  }
  return out;
}

function isObject(value: JsonValue): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
