import { test } from "node:test";
import assert from "node:assert/strict";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { applyFieldMask, FieldMaskError, mergePatch, ReservedKeyError } from "./merge-patch.js";
import { classifyFailure } from "./failures.js";

test("merge patch: the examples of RFC 7396 appendix A", () => {
  const cases: [JsonValue, JsonValue, JsonValue][] = [
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [["a", "b"], ["c", "d"], ["c", "d"]],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, expected] of cases) {
    const before = structuredClone(target);
    assert.deepEqual(mergePatch(target, patch), expected, `${JSON.stringify(target)} + ${JSON.stringify(patch)}`);
    assert.deepEqual(target, before, "the target is not modified");
  }
});

test("field mask: named paths are replaced or removed, others kept", () => {
  const target: JsonObject = { title: "t", meta: { color: "red", size: 1 }, tags: ["a"] };
  assert.deepEqual(applyFieldMask(target, { title: "u", meta: { color: "blue", size: 9 } }, ["title", "meta.color"]), {
    title: "u",
    meta: { color: "blue", size: 1 },
    tags: ["a"],
  });
  assert.deepEqual(applyFieldMask(target, {}, ["tags", "meta.size"]), { title: "t", meta: { color: "red" } });
  assert.deepEqual(applyFieldMask(target, { deep: { new: { leaf: 1 } } }, ["deep.new.leaf"]), { ...target, deep: { new: { leaf: 1 } } });
  assert.deepEqual(applyFieldMask(target, {}, ["missing.path"]), target, "removing what is not there is a no-op");
  assert.deepEqual(applyFieldMask(target, { only: true }, ["*"]), { only: true });
  assert.deepEqual(applyFieldMask(target, { title: null }, ["title"]), { ...target, title: null });
  assert.throws(() => applyFieldMask(target, {}, ["a..b"]), FieldMaskError);
  assert.deepEqual(target, { title: "t", meta: { color: "red", size: 1 }, tags: ["a"] });
});

test("failures: SQLSTATE and network errors are classified; backoff grows with jitter and a cap", () => {
  const pgError = (code: string) => Object.assign(new Error("x"), { code });
  assert.equal(classifyFailure(pgError("40001")), "transient");
  assert.equal(classifyFailure(pgError("40P01")), "transient");
  assert.equal(classifyFailure(pgError("08006")), "transient");
  assert.equal(classifyFailure(pgError("57P01")), "transient");
  assert.equal(classifyFailure(pgError("53300")), "transient");
  assert.equal(classifyFailure(pgError("ECONNREFUSED")), "transient");
  assert.equal(classifyFailure(new Error("Connection terminated unexpectedly")), "transient");
  assert.equal(classifyFailure(new Error("timeout exceeded when trying to connect")), "transient");
  assert.equal(classifyFailure(pgError("22P05")), "permanent");
  assert.equal(classifyFailure(pgError("23514")), "permanent");
  assert.equal(classifyFailure(pgError("42P01")), "unknown");
  assert.equal(classifyFailure(new TypeError("bug")), "unknown");
});

test("merge patch and field mask: __proto__, constructor and prototype never reach a prototype", () => {
  const polluted = () => Object.keys(Object.prototype).length + ("x" in {} ? 1 : 0);
  const before = polluted();
  const patches: JsonObject[] = [
    JSON.parse('{"__proto__":{"x":1}}'),
    JSON.parse('{"a":{"__proto__":{"x":1}}}'),
    { constructor: { prototype: { x: 1 } } },
    { a: { prototype: { x: 1 } } },
  ];
  for (const patch of patches) {
    assert.throws(() => mergePatch({ a: {} }, patch), ReservedKeyError, JSON.stringify(patch));
  }
  for (const path of ["__proto__.x", "a.__proto__.x", "constructor.prototype.x", "a.prototype", "constructor"]) {
    assert.throws(() => applyFieldMask({ a: {} }, JSON.parse('{"__proto__":{"x":1},"a":{"__proto__":{"x":1}}}'), [path]), ReservedKeyError, path);
  }
  assert.equal(polluted(), before, "Object.prototype is unchanged");
  assert.equal(({} as Record<string, unknown>).x, undefined);
});
