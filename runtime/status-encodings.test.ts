import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code as ConnectCode, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { Code } from "./errors.js";
import { connectCodeName, statusEncodings } from "./status-encodings.js";

const status = (message: string) =>
  create(StatusSchema, { code: Code.PERMISSION_DENIED, message, details: [anyPack(ErrorInfoSchema, create(ErrorInfoSchema, { reason: "CROSS_TENANT_ACCESS", domain: "umw.dev", metadata: { tenants: "ténant" } }))] });

test("Connect code names are gRPC's in lower case, canceled spelled the Connect way", () => {
  assert.equal(connectCodeName(Code.PERMISSION_DENIED), "permission_denied");
  assert.equal(connectCodeName(Code.UNAUTHENTICATED), "unauthenticated");
  assert.equal(connectCodeName(Code.CANCELLED), "canceled");
});

test("a Connect error body names the detail's type without the URL prefix, so connect-es finds the ErrorInfo", () => {
  const body = JSON.parse(statusEncodings(status("no")).connect) as { code: string; message: string; details: { type: string; value: string }[] };
  assert.equal(body.code, "permission_denied");
  assert.equal(body.details[0]!.type, "google.rpc.ErrorInfo");
  // As connect-es reads a Connect error body: each detail as it came, its `type` matched against the schema's name.
  const error = new ConnectError(body.message, ConnectCode.PermissionDenied);
  error.details.push(...body.details.map((detail) => ({ type: detail.type, value: new Uint8Array(Buffer.from(detail.value, "base64")) })));
  assert.equal(error.findDetails(ErrorInfoSchema)[0]?.reason, "CROSS_TENANT_ACCESS");
});

test("the Connect end-stream frame is ASCII whatever the message and length, its prefix is its length, its JSON the error", () => {
  for (let length = 0; length < 600; length += 7) {
    const frame = statusEncodings(status(`ü ${"x".repeat(length)}`)).connectStream;
    assert.ok(frame.every((byte, index) => index === 0 || byte < 0x80), `non-ASCII byte at length ${length}`);
    assert.equal(frame[0], 2);
    const size = Buffer.from(frame).readUInt32BE(1);
    assert.equal(size, frame.length - 5);
    const { error } = JSON.parse(Buffer.from(frame.subarray(5)).toString("ascii")) as { error: { code: string; message: string } };
    assert.equal(error.code, "permission_denied");
    assert.ok(error.message.startsWith("ü "));
  }
});

test("gRPC-web trailers carry the status, the percent-encoded message and the whole google.rpc.Status", () => {
  const encodings = statusEncodings(status("no way"));
  const trailers = Buffer.from(encodings.grpcWeb.subarray(5)).toString("ascii");
  assert.equal(encodings.grpcWeb[0], 0x80);
  assert.match(trailers, /^grpc-status:7\r\ngrpc-message:no%20way\r\ngrpc-status-details-bin:[A-Za-z0-9+/]+\r\n$/);
  const decoded = fromBinary(StatusSchema, Buffer.from(encodings.grpcDetails, "base64"));
  assert.equal(decoded.details[0]!.typeUrl, "type.googleapis.com/google.rpc.ErrorInfo");
});
