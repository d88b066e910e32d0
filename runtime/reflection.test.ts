import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { ExtensionRequestSchema, ServerReflectionRequestSchema, type ServerReflectionRequest } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { file_google_rpc_error_details } from "../gen/google/rpc/error_details_pb.js";
import { CommandService } from "../gen/umw/v1/command_pb.js";
import { QueryService } from "../gen/umw/v1/query_pb.js";
import { DescriptorIndex } from "./reflection.js";

const index = new DescriptorIndex([QueryService], [file_google_rpc_error_details]);
const ask = (messageRequest: ServerReflectionRequest["messageRequest"]) => index.answer(create(ServerReflectionRequestSchema, { messageRequest }));
const fileNames = (answer: ReturnType<typeof ask>) => {
  assert.equal(answer?.case, "fileDescriptorResponse", JSON.stringify(answer));
  const files = (answer!.value as { fileDescriptorProto: Uint8Array[] }).fileDescriptorProto;
  return files.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
};
const errorCode = (answer: ReturnType<typeof ask>) => (answer?.case === "errorResponse" ? answer.value.errorCode : undefined);

test("a file comes first, then each file it imports, directly or not, once", () => {
  const names = fileNames(ask({ case: "fileByFilename", value: "umw/v1/query.proto" }));
  assert.equal(names[0], "umw/v1/query.proto");
  assert.equal(new Set(names).size, names.length);
  for (const name of ["umw/v1/entity.proto", "google/api/annotations.proto", "google/api/http.proto", "google/protobuf/descriptor.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]) {
    assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
  }
});

test("symbols: types, services, methods, fields, and the extra files' types", () => {
  assert.equal(fileNames(ask({ case: "fileContainingSymbol", value: "umw.v1.QueryService" }))[0], "umw/v1/query.proto");
  assert.equal(fileNames(ask({ case: "fileContainingSymbol", value: "umw.v1.QueryService.ListEntities" }))[0], "umw/v1/query.proto");
  assert.equal(fileNames(ask({ case: "fileContainingSymbol", value: "umw.v1.Entity.version" }))[0], "umw/v1/entity.proto");
  assert.equal(fileNames(ask({ case: "fileContainingSymbol", value: "google.protobuf.Timestamp" }))[0], "google/protobuf/timestamp.proto");
  assert.equal(fileNames(ask({ case: "fileContainingSymbol", value: "google.rpc.ErrorInfo" }))[0], "google/rpc/error_details.proto");
});

test("what the server does not serve is NOT_FOUND; an empty request is INVALID_ARGUMENT", () => {
  assert.equal(errorCode(ask({ case: "fileContainingSymbol", value: CommandService.typeName })), status.NOT_FOUND);
  assert.equal(errorCode(ask({ case: "fileContainingSymbol", value: "umw.v1.QueryService.Nope" })), status.NOT_FOUND);
  assert.equal(errorCode(ask({ case: "fileContainingSymbol", value: "Nope" })), status.NOT_FOUND);
  assert.equal(errorCode(ask({ case: "fileByFilename", value: "umw/v1/command.proto" })), status.NOT_FOUND);
  assert.equal(errorCode(ask({ case: "allExtensionNumbersOfType", value: "umw.v1.Nope" })), status.NOT_FOUND);
  assert.equal(errorCode(ask({ case: undefined })), status.INVALID_ARGUMENT);
});

test("extensions: google.api.http on MethodOptions, and none on a message without any", () => {
  assert.equal(fileNames(ask({ case: "fileContainingExtension", value: create(ExtensionRequestSchema, { containingType: "google.protobuf.MethodOptions", extensionNumber: 72295728 }) }))[0], "google/api/annotations.proto");
  assert.deepEqual(ask({ case: "allExtensionNumbersOfType", value: "google.protobuf.MethodOptions" }), {
    case: "allExtensionNumbersResponse",
    value: { baseTypeName: "google.protobuf.MethodOptions", extensionNumber: [72295728] },
  });
  assert.deepEqual(ask({ case: "allExtensionNumbersOfType", value: "umw.v1.Entity" }), {
    case: "allExtensionNumbersResponse",
    value: { baseTypeName: "umw.v1.Entity", extensionNumber: [] },
  });
});

test("list_services names exactly the services given", () => {
  assert.deepEqual(ask({ case: "listServices", value: "*" }), { case: "listServicesResponse", value: { service: [{ name: "umw.v1.QueryService" }] } });
});
