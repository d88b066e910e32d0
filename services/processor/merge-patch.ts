import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { isReservedKey } from "../../runtime/reserved-keys.js";

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function clone<T extends JsonValue>(value: T): T {
  return structuredClone(value);
}

/** The member's own value: never one inherited from a prototype. */
function own(object: JsonObject, key: string): JsonValue | undefined {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/**
 * Sets an own data property. CommandService and the edge refuse reserved keys (runtime/reserved-keys.ts)
 * before a command is accepted; this is the second line, for a command that got past them.
 */
function setOwn(object: JsonObject, key: string, value: JsonValue): void {
  if (isReservedKey(key)) throw new ReservedKeyError(key);
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * JSON Merge Patch (RFC 7396): objects merge key by key, `null` removes a member, anything else
 * (arrays included) replaces. Returns a new value; neither argument is modified. A patch key
 * `__proto__`, `constructor` or `prototype` throws ReservedKeyError: no prototype is ever read or written.
 */
export function mergePatch(target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isObject(patch)) return clone(patch);
  const result: JsonObject = isObject(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (isReservedKey(key)) throw new ReservedKeyError(key);
    if (value === null) delete result[key];
    else setOwn(result, key, mergePatch(own(result, key), value));
  }
  return result;
}

/** Merge patch of a whole entity payload: the root stays an object. */
export function mergePatchObject(target: JsonObject, patch: JsonObject): JsonObject {
  return mergePatch(target, patch) as JsonObject;
}

/**
 * Field-mask update (AIP-134 semantics on a JSON payload): every path names a member by
 * dot-separated keys; it takes the patch's value at that path, or is removed when the patch has no
 * value there. Members not named by a path keep their value. The path `*` replaces everything.
 */
export function applyFieldMask(target: JsonObject, patch: JsonObject, paths: readonly string[]): JsonObject {
  if (paths.includes("*")) return clone(patch);
  const result = clone(target);
  for (const path of paths) {
    const keys = path.split(".");
    if (keys.some((key) => key === "")) throw new FieldMaskError(path);
    const reserved = keys.find(isReservedKey);
    if (reserved !== undefined) throw new ReservedKeyError(reserved);
    const source = lookup(patch, keys);
    let node: JsonObject = result;
    for (const key of keys.slice(0, -1)) {
      const child = own(node, key);
      if (!isObject(child)) {
        if (source === undefined) {
          node = {};
          break;
        }
        setOwn(node, key, {});
      }
      node = own(node, key) as JsonObject;
    }
    const last = keys[keys.length - 1]!;
    if (source === undefined) delete node[last];
    else setOwn(node, last, clone(source));
  }
  return result;
}

export class FieldMaskError extends Error {
  override readonly name = "FieldMaskError";
  constructor(readonly path: string) {
    super(`update_mask path ${JSON.stringify(path)} is not a dot-separated list of member names`);
  }
}

/** A patch or update_mask naming `__proto__`, `constructor` or `prototype`. */
export class ReservedKeyError extends Error {
  override readonly name = "ReservedKeyError";
  constructor(readonly key: string) {
    super(`the member name ${JSON.stringify(key)} is reserved`);
  }
}

function lookup(value: JsonObject, keys: readonly string[]): JsonValue | undefined {
  let node: JsonValue | undefined = value;
  for (const key of keys) {
    if (!isObject(node) || !Object.prototype.hasOwnProperty.call(node, key)) return undefined;
    node = node[key];
  }
  return node;
}
