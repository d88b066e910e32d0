// Unit tests: entity tags and If-None-Match (RFC 9110 weak comparison), gRPC -> HTTP status.
//
//   node --import tsx --test services/edge/entity-tags.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { GetEntityResponseSchema, QueryService, BatchGetEntitiesResponseSchema } from "../../gen/umw/v1/query_pb.js";
import { EntitySchema } from "../../gen/umw/v1/entity_pb.js";
import { entityTag, noneMatch, versionLocator } from "./entity-tags.js";
import { httpStatusOf } from "./http-status.js";

const versioned = new Set(["umw.v1.Entity"]);

test("the ETag is the weak version of the entity a response carries", () => {
  const locator = versionLocator(GetEntityResponseSchema, versioned)!;
  assert.equal(entityTag(create(GetEntityResponseSchema, { entity: { version: 42n } }), locator), 'W/"42"');
  assert.equal(entityTag(create(GetEntityResponseSchema, { entity: { version: 0n } }), locator), undefined);
  assert.equal(entityTag(create(GetEntityResponseSchema, {}), locator), undefined);
  assert.equal(entityTag(create(EntitySchema, { version: 3n }), versionLocator(EntitySchema, versioned)!), 'W/"3"');
  assert.equal(versionLocator(BatchGetEntitiesResponseSchema, versioned), undefined, "no single entity, no ETag");
  assert.equal(versionLocator(QueryService.method.listEntities.output, versioned), undefined);
});

test("If-None-Match: weak comparison over a list, and *", () => {
  const current = 'W/"7"';
  for (const header of ['W/"7"', '"7"', '"1", W/"7"', ' W/"1" ,"7"', "*", " * ", 'W/"a,b", "7"']) assert.equal(noneMatch(header, current), true, header);
  for (const header of ['W/"8"', '"77"', "7", "", 'W/"', '"7', 'x, W/"6"', 'W/"a,b"']) assert.equal(noneMatch(header, current), false, header);
  assert.equal(noneMatch('"7"', undefined), false);
  assert.equal(noneMatch("*", undefined), true, "* matches any current representation");
  assert.equal(noneMatch('"a,b"', 'W/"a,b"'), true);
});

test("gRPC codes map to HTTP statuses as grpc-gateway and Envoy map them", () => {
  const expected = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401];
  assert.deepEqual(expected.map((_, code) => httpStatusOf(code)), expected);
  assert.equal(httpStatusOf(9, true), 412, "FAILED_PRECONDITION of a conditional request");
  assert.equal(httpStatusOf(5, true), 404);
  assert.equal(httpStatusOf(99), 500);
});
