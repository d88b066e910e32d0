import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { Code, errorInfoOf, invalidArgument, RpcError } from "./errors.js";

test("reasons and their codes come from the catalogue: anything else does not compile", () => {
  // @ts-expect-error a reason runtime/reasons.ts does not declare
  const unknown = new RpcError(Code.NOT_FOUND, "NO_SUCH_REASON", "x");
  // @ts-expect-error ENTITY_NOT_FOUND is declared with NOT_FOUND only
  const wrongCode = new RpcError(Code.INTERNAL, "ENTITY_NOT_FOUND", "x");
  // @ts-expect-error ENTITY_NOT_FOUND is not an INVALID_ARGUMENT reason
  const wrongHelper = invalidArgument("ENTITY_NOT_FOUND", "x");
  assert.deepEqual([unknown.reason, wrongCode.code, wrongHelper.code], ["NO_SUCH_REASON", Code.INTERNAL, Code.INVALID_ARGUMENT]);
});

test("an RpcError of umw's own carries one ErrorInfo in the umw domain", () => {
  const status = new RpcError(Code.NOT_FOUND, "ENTITY_NOT_FOUND", "no such entity", { id: "a" }).toStatus();
  assert.equal(status.code, Code.NOT_FOUND);
  assert.equal(status.message, "no such entity");
  assert.deepEqual([status.details.length, errorInfoOf(status)?.reason, errorInfoOf(status)?.domain, errorInfoOf(status)?.metadata], [1, "ENTITY_NOT_FOUND", "umw.dev", { id: "a" }]);
});

test("a received Status is passed on whole; a peer's reason need not be catalogued", () => {
  const received = create(StatusSchema, {
    code: Code.RESOURCE_EXHAUSTED,
    message: "slow down",
    details: [anyPack(ErrorInfoSchema, create(ErrorInfoSchema, { reason: "PEER_REASON", domain: "peer.example" })), anyPack(RetryInfoSchema, create(RetryInfoSchema, {}))],
  });
  const error = RpcError.fromStatus(received, { "retry-after": "3" });
  assert.deepEqual([error.code, error.reason, error.message, error.headers], [Code.RESOURCE_EXHAUSTED, "PEER_REASON", "slow down", { "retry-after": "3" }]);
  assert.equal(error.toStatus(), received);
  const wire = RpcError.fromWire(Code.ABORTED, "WIRE_REASON", "m", { k: "v" });
  assert.deepEqual([wire.code, wire.reason, errorInfoOf(wire.toStatus())?.reason], [Code.ABORTED, "WIRE_REASON", "WIRE_REASON"]);
});
