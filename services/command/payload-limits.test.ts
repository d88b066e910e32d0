// Pure logic: the payload limits and the Struct size they measure.
//
//   node --import tsx --test services/command/payload-limits.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { fromJson, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { RpcError } from "../../runtime/errors.js";
import { checkMaskPath, checkPayload, structSize } from "./payload-limits.js";

const limits = { maxDepth: 4, maxBytes: 1_000 };

function reason(data: JsonObject, at = limits): string | undefined {
  try {
    checkPayload(data, at);
    return undefined;
  } catch (error) {
    assert.ok(error instanceof RpcError);
    assert.equal(error.code, 3, "INVALID_ARGUMENT");
    return `${error.reason} ${error.metadata.field}`;
  }
}

test("structSize is the length of the google.protobuf.Struct encoding", () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 5 }), fc.string({ unit: "grapheme" }), (value, key) => {
      // Through JSON text, as payloads arrive (-0 becomes 0, and so on).
      const data = JSON.parse(JSON.stringify({ [key]: value })) as JsonObject;
      assert.equal(structSize(data), toBinary(StructSchema, fromJson(StructSchema, data)).length);
    }),
    { seed: 42, numRuns: 300 },
  );
});

test("depth: {} is 1; one level more than the limit is refused, naming the field", () => {
  assert.equal(reason({ a: { b: { c: { d: 1 } } } }), undefined);
  assert.equal(reason({ a: { b: { c: { d: {} } } } }), "PAYLOAD_TOO_DEEP data.a.b.c.d");
  assert.equal(reason({ a: [[[1]]] }), undefined);
  assert.equal(reason({ a: [[[[]]]] }), "PAYLOAD_TOO_DEEP data.a[0][0][0]");
});

test("NUL, lone surrogates and non-finite numbers are refused in keys and strings", () => {
  assert.equal(reason({ title: "a\u0000b" }), "INVALID_CHARACTER data.title");
  assert.equal(reason({ "a\u0000": 1 }), `INVALID_CHARACTER data["a\\u0000"]`);
  assert.equal(reason({ t: ["\ud800"] }), "INVALID_UNICODE data.t[0]");
  assert.equal(reason({ t: "x\udc00" }), "INVALID_UNICODE data.t");
  assert.equal(reason({ t: "\ud83d\ude00 ok" }), undefined, "a surrogate pair is fine");
  assert.equal(reason(JSON.parse('{"n":1e400}')), "NUMBER_OUT_OF_RANGE data.n");
  assert.equal(reason({ n: -1.7e308 }), undefined);
});

test("size: over the bytes limit is refused with the size", () => {
  assert.equal(reason({ s: "x".repeat(900) }), undefined);
  assert.equal(reason({ s: "x".repeat(1_000) }), "PAYLOAD_TOO_LARGE data");
});

test("reserved keys: __proto__, constructor and prototype are refused at any depth, in keys and mask paths", () => {
  assert.equal(reason(JSON.parse('{"__proto__":{"x":1}}')), "RESERVED_KEY data.__proto__");
  assert.equal(reason({ a: [{ constructor: 1 }] }), "RESERVED_KEY data.a[0].constructor");
  assert.equal(reason({ a: { b: { prototype: {} } } }), "RESERVED_KEY data.a.b.prototype");
  assert.equal(reason({ proto: 1, constructors: 2, "a.__proto__": 3 }), undefined, "only the exact names");
  for (const path of ["__proto__.x", "a.constructor", "a.b.prototype"]) {
    assert.throws(() => checkMaskPath(path), (error: unknown) => error instanceof RpcError && error.reason === "RESERVED_KEY" && error.code === 3, path);
  }
  assert.doesNotThrow(() => checkMaskPath("a.proto_x.b"));
});
