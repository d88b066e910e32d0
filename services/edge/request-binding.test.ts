import { test } from "node:test";
import assert from "node:assert/strict";
import { toBinary } from "@bufbuild/protobuf";
import { GetEntityRequestSchema, QueryService } from "../../gen/umw/v1/query_pb.js";
import { encodingOf } from "../../runtime/encoded-once.js";
import { typeRegistry } from "./edge-context.js";
import { readHttpBindings } from "./http-rules.js";
import { BoundRequests } from "./request-binding.js";

const registry = typeRegistry([QueryService]);
const getEntity = readHttpBindings([QueryService], new Set()).find((binding) => binding.method === QueryService.method.getEntity)!;

test("bound requests: one shared, pre-encoded message per path and query; a different path or query binds anew", () => {
  const bound = new BoundRequests(registry);
  const first = bound.bind(getEntity, ["t1", "item", "a"], undefined, undefined);
  assert.equal(bound.bind(getEntity, ["t1", "item", "a"], undefined, undefined), first, "the same path: the same message");
  assert.deepEqual(encodingOf(first), Buffer.from(toBinary(GetEntityRequestSchema, first as never)), "encoded once, as protobuf-es encodes it");

  const otherTenant = bound.bind(getEntity, ["t2", "item", "a"], undefined, undefined) as unknown as { tenant: string };
  assert.equal(otherTenant.tenant, "t2");
  const withQuery = bound.bind(getEntity, ["t1", "item", "a"], "min_version=7", undefined) as unknown as { minVersion: bigint };
  assert.notEqual(withQuery, first);
  assert.equal(withQuery.minVersion, 7n);
  // Values that would run together if joined: still different requests.
  const a = bound.bind(getEntity, ["t", "x,y", "z"], undefined, undefined) as unknown as { type: string; id: string };
  const b = bound.bind(getEntity, ["t", "x", "y,z"], undefined, undefined) as unknown as { type: string; id: string };
  assert.deepEqual([a.type, a.id, b.type, b.id], ["x,y", "z", "x", "y,z"]);
});

test("bound requests: a bad query parameter is refused every time, not remembered", () => {
  const bound = new BoundRequests(registry);
  for (let i = 0; i < 2; i++) {
    assert.throws(() => bound.bind(getEntity, ["t1", "item", "a"], "min_version=seven", undefined), (error: Error & { reason?: string }) => error.reason === "INVALID_QUERY_PARAMETER");
  }
});
