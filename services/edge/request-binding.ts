import { fromJson, type DescField, type JsonObject, type JsonValue, type Message, type Registry } from "@bufbuild/protobuf";
import { Code, RpcError } from "../../runtime/errors.js";
import { fieldPathName, fieldTextToJson, FieldTextError, resolveFieldPath } from "./field-text.js";
import type { HttpBinding } from "./http-rules.js";
import type { PayloadLimits } from "../command/payload-limits.js";
import { checkRequestPayloads } from "./payload-check.js";
import { encodedOnce } from "../../runtime/encoded-once.js";

/**
 * Builds the request message of a REST call, as grpc-gateway does: the body (all of it for
 * `body: "*"`, else into the named field), then query parameters for every field the path and the
 * body do not bind (`ids=a&ids=b` for repeated fields, `a.b=x` for nested ones; unknown names
 * ignored; not read when the body is `*`), then the path variables, which win.
 *
 * Path and query texts are converted per field type first, so a bad one is reported by name; the
 * result is handed to protobuf-es `fromJson` as one proto3 JSON object. The body must be UTF-8
 * (invalid bytes are refused, not replaced), and entity payloads must be within `limits`.
 */
export function bindRequest(
  binding: HttpBinding,
  values: readonly string[],
  query: string | undefined,
  body: Buffer | undefined,
  registry: Registry,
  limits?: PayloadLimits,
): Message {
  let json: JsonObject = {};
  const hasBody = body !== undefined && body.length > 0 && binding.body !== undefined;
  if (hasBody) {
    const parsed = parseJson(body);
    if (binding.body === "*") {
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_JSON", "the request body must be a JSON object");
      }
      json = parsed;
    } else {
      json[binding.body!.jsonName] = parsed;
    }
  }
  if (query && binding.body !== "*") bindQuery(binding, json, query);
  for (let i = 0; i < values.length; i++) {
    const chain = binding.pathFields[i]!;
    const leaf = chain[chain.length - 1]!;
    let value: JsonValue;
    try {
      value = fieldTextToJson(leaf, values[i]!);
    } catch (error) {
      const field = fieldPathName(chain);
      throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_PATH_PARAMETER", `path parameter ${field}: ${(error as Error).message}`, { field });
    }
    setAt(json, chain, value, true);
  }
  let message: Message;
  try {
    message = fromJson(binding.method.input, json, { registry });
  } catch (error) {
    const detail = (error as Error).message;
    if (hasBody) {
      const metadata: Record<string, string> = typeof binding.body === "object" ? { field: binding.body.name } : {};
      throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_JSON", `the request body does not fit ${binding.method.input.typeName}: ${detail}`, metadata);
    }
    throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", detail);
  }
  if (limits) checkRequestPayloads(binding.method.input, message, limits);
  return message;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

function parseJson(body: Buffer): JsonValue {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_UTF8", "the request body is not valid UTF-8");
  }
  try {
    return JSON.parse(text) as JsonValue;
  } catch (error) {
    throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_JSON", `the request body is not valid JSON: ${(error as Error).message}`);
  }
}

/** Known query parameter names per binding; unknown names are not remembered (they are unbounded). */
const queryFields = new WeakMap<HttpBinding, Map<string, readonly DescField[] | null>>();

function queryField(binding: HttpBinding, name: string): readonly DescField[] | null {
  let known = queryFields.get(binding);
  if (!known) queryFields.set(binding, (known = new Map()));
  const cached = known.get(name);
  if (cached !== undefined) return cached;
  const chain = resolveFieldPath(binding.method.input, name);
  if (!chain) return null;
  // Parameters naming a field the path or the body binds (or a field inside one) are ignored.
  const bound = binding.boundFields.some((boundChain) => boundChain.every((field, i) => chain[i] === field));
  const result = bound ? null : chain;
  known.set(name, result);
  return result;
}

function bindQuery(binding: HttpBinding, json: JsonObject, query: string): void {
  let seen: Set<string> | undefined;
  for (const [name, text] of new URLSearchParams(query)) {
    const chain = queryField(binding, name);
    if (!chain) continue;
    const leaf = chain[chain.length - 1]!;
    let value: JsonValue;
    try {
      value = fieldTextToJson(leaf, text);
    } catch (error) {
      const message = error instanceof FieldTextError ? error.message : String(error);
      throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_QUERY_PARAMETER", `query parameter ${name}: ${message}`, { parameter: name });
    }
    if (leaf.fieldKind !== "list") {
      const key = fieldPathName(chain);
      seen ??= new Set();
      if (seen.has(key)) {
        throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_QUERY_PARAMETER", `query parameter ${name}: more than one value for a singular field`, { parameter: name });
      }
      seen.add(key);
    }
    setAt(json, chain, value, false);
  }
}

/** Sets a value at a field chain of a JSON object; repeated leaves are appended to. */
function setAt(json: JsonObject, chain: readonly DescField[], value: JsonValue, replace: boolean): void {
  let target = json;
  for (let i = 0; i < chain.length - 1; i++) {
    const field = chain[i]!;
    const key = keyOf(target, field);
    let next = target[key];
    if (next === undefined || next === null || typeof next !== "object" || Array.isArray(next)) {
      next = {};
      target[key] = next;
    }
    target = next;
  }
  const leaf = chain[chain.length - 1]!;
  if (replace) {
    if (leaf.name !== leaf.jsonName && leaf.name in target) delete target[leaf.name];
    target[leaf.jsonName] = value;
  } else if (leaf.fieldKind === "list") {
    const key = keyOf(target, leaf);
    const list = target[key];
    if (Array.isArray(list)) list.push(value);
    else target[key] = [value];
  } else {
    target[keyOf(target, leaf)] = value;
  }
}

function keyOf(target: JsonObject, field: DescField): string {
  if (field.jsonName in target) return field.jsonName;
  if (field.name in target) return field.name;
  return field.jsonName;
}

/** Bodiless requests (GETs) whose bound message is kept, per binding; oldest dropped first. */
const BOUND_KEPT = 1024;

/**
 * bindRequest, remembered for requests without a body: the same path and query bind to the same
 * message, made (and encoded for the upstream, encodedOnce) once, instead of a JSON round trip
 * through protobuf-es on every read of a hot entity. The messages are shared: never modified.
 */
export class BoundRequests {
  private readonly byBinding = new WeakMap<HttpBinding, Map<string, Message>>();

  constructor(
    private readonly registry: Registry,
    private readonly limits?: PayloadLimits,
  ) {}

  bind(binding: HttpBinding, values: readonly string[], query: string | undefined, body: Buffer | undefined): Message {
    if (body !== undefined && body.length > 0) return bindRequest(binding, values, query, body, this.registry, this.limits);
    let known = this.byBinding.get(binding);
    if (!known) this.byBinding.set(binding, (known = new Map()));
    // JSON: unambiguous whatever the (decoded) path values contain.
    const key = JSON.stringify(query === undefined ? values : [...values, query]);
    let message = known.get(key);
    if (message === undefined) {
      message = encodedOnce(binding.method.input, bindRequest(binding, values, query, undefined, this.registry, this.limits));
      known.set(key, message);
      if (known.size > BOUND_KEPT) known.delete(known.keys().next().value!);
    }
    return message;
  }
}
