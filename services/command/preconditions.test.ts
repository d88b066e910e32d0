// Pure logic: If-Match / If-None-Match / expected_version as a write's preconditions.
//
//   node --import tsx --test services/command/preconditions.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { RpcError } from "../../runtime/errors.js";
import { expectedVersionOf, NO_PRECONDITIONS, readPreconditions } from "./preconditions.js";

test("entity-tags name versions, weak or strong; tags that are no version never match", () => {
  assert.deepEqual(readPreconditions({ "if-match": 'W/"3"' }, 0n).versions, [3n]);
  assert.deepEqual(readPreconditions({ "if-match": '"3"' }, 0n).versions, [3n]);
  assert.deepEqual(readPreconditions({ "if-match": ' W/"3" , "5",W/"x"' }, 0n).versions, [3n, 5n]);
  assert.deepEqual(readPreconditions({ "if-match": '"abc"' }, 0n).versions, []);
  assert.equal(expectedVersionOf(readPreconditions({ "if-match": '"3"' }, 0n)), 3n);
  assert.equal(expectedVersionOf(readPreconditions({ "if-match": '"3", "4"' }, 0n)), undefined, "several: the current one is looked up");
});

test("* means exists (If-Match) or does not exist (If-None-Match); none at all is no precondition", () => {
  const star = readPreconditions({ "if-match": "*" }, 0n);
  assert.deepEqual([star.mustExist, star.versions, expectedVersionOf(star)], [true, undefined, 0n]);
  assert.equal(readPreconditions({ "if-none-match": "*" }, 0n).mustNotExist, true);
  assert.equal(readPreconditions({}, 0n), NO_PRECONDITIONS);
});

test("expected_version alone, and together with If-Match (both must hold)", () => {
  assert.deepEqual(readPreconditions({}, 4n).versions, [4n]);
  assert.deepEqual(readPreconditions({ "if-match": '"4", "5"' }, 4n).versions, [4n]);
  assert.deepEqual(readPreconditions({ "if-match": '"5"' }, 4n).versions, [], "never holds");
});

test("a malformed header is INVALID_ARGUMENT INVALID_PRECONDITION", () => {
  for (const header of ["3", 'W/3', '"3', '"3" x', '"3",,']) {
    assert.throws(() => readPreconditions({ "if-match": header }, 0n), (error: unknown) => error instanceof RpcError && error.reason === "INVALID_PRECONDITION", header);
  }
});
