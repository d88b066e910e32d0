import { test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { EntitySchema } from "../gen/umw/v1/entity_pb.js";
import { GetEntityResponseSchema, QueryService } from "../gen/umw/v1/query_pb.js";
import { encodedOnce, encodingOf } from "./encoded-once.js";
import { grpcServiceDefinition } from "./service-definition.js";

test("encodedOnce: the server's serializer sends the bytes encoded when marked, and encodes unmarked messages per call", () => {
  const serialize = grpcServiceDefinition(QueryService).getEntity!.responseSerialize;
  const entity = create(EntitySchema, { tenant: "t", type: "item", id: "a", version: 3n });
  const marked = encodedOnce(GetEntityResponseSchema, create(GetEntityResponseSchema, { entity }));
  const bytes = encodingOf(marked)!;
  assert.deepEqual(bytes, Buffer.from(toBinary(GetEntityResponseSchema, marked)));
  assert.equal(serialize(marked), bytes, "the very bytes, not a new encoding");
  assert.equal(encodedOnce(GetEntityResponseSchema, marked), marked);
  assert.equal(encodingOf(marked), bytes, "marking twice keeps the first encoding");

  const unmarked = create(GetEntityResponseSchema, { entity });
  assert.equal(encodingOf(unmarked), undefined);
  assert.deepEqual(serialize(unmarked), bytes);
  assert.notEqual(serialize(unmarked), bytes);
  assert.equal(encodingOf("text"), undefined);
  assert.equal(encodingOf(null), undefined);
});
