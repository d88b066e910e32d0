// A test-only service built from a descriptor at runtime, to drive the edge with HttpRule shapes the
// umw protos do not use: `body: "*"`, a nested body field and nested path variable, multi-segment
// variables, `**`, response_body, additional_bindings, a custom verb, and query parameters of every
// kind (enum, bool, double, repeated int32, Timestamp, nested message fields).
import { create, createFileRegistry, setExtension, type DescFile, type DescService } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
  MethodOptionsSchema,
  file_google_protobuf_timestamp,
  type FieldDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { file_google_api_annotations, http } from "../../gen/google/api/annotations_pb.js";
import { HttpRuleSchema } from "../../gen/google/api/http_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";

const field = (name: string, number: number, type: Type, extra: { label?: Label; typeName?: string } = {}): FieldDescriptorProto =>
  create(FieldDescriptorProtoSchema, {
    name,
    number,
    type,
    label: Label.OPTIONAL,
    jsonName: name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
    ...extra,
  });
const repeated = { label: Label.REPEATED };
const message = (typeName: string) => ({ typeName });

function rule(init: MessageInitShape<typeof HttpRuleSchema>) {
  const options = create(MethodOptionsSchema);
  setExtension(options, http, create(HttpRuleSchema, init));
  return options;
}

const fileProto = create(FileDescriptorProtoSchema, {
  name: "edgetest/v1/library.proto",
  package: "edgetest.v1",
  syntax: "proto3",
  dependency: ["google/api/annotations.proto", "google/protobuf/timestamp.proto"],
  enumType: [{ name: "Kind", value: [{ name: "KIND_UNSPECIFIED", number: 0 }, { name: "NOVEL", number: 1 }, { name: "POEM", number: 2 }] }],
  messageType: [
    {
      name: "Book",
      field: [
        field("name", 1, Type.STRING),
        field("title", 2, Type.STRING),
        field("version", 3, Type.INT64),
        field("kind", 4, Type.ENUM, message(".edgetest.v1.Kind")),
      ],
    },
    { name: "Filter", field: [field("author", 1, Type.STRING), field("year", 2, Type.UINT32)] },
    {
      name: "GetBookRequest",
      field: [
        field("name", 1, Type.STRING),
        field("kind", 2, Type.ENUM, message(".edgetest.v1.Kind")),
        field("ratings", 3, Type.INT32, repeated),
        field("published", 4, Type.BOOL),
        field("price", 5, Type.DOUBLE),
        field("since", 6, Type.MESSAGE, message(".google.protobuf.Timestamp")),
        field("filter", 7, Type.MESSAGE, message(".edgetest.v1.Filter")),
        field("data", 8, Type.BYTES),
      ],
    },
    { name: "GetBookResponse", field: [field("book", 1, Type.MESSAGE, message(".edgetest.v1.Book")), field("note", 2, Type.STRING)] },
    { name: "CreateBookRequest", field: [field("parent", 1, Type.STRING), field("book", 2, Type.MESSAGE, message(".edgetest.v1.Book"))] },
    { name: "UpdateBookRequest", field: [field("book", 1, Type.MESSAGE, message(".edgetest.v1.Book")), field("force", 2, Type.BOOL)] },
    { name: "FileRequest", field: [field("path", 1, Type.STRING)] },
  ] as { name: string; field: FieldDescriptorProto[] }[],
  service: [
    {
      name: "Library",
      method: [
        {
          name: "GetBook",
          inputType: ".edgetest.v1.GetBookRequest",
          outputType: ".edgetest.v1.GetBookResponse",
          options: rule({
            pattern: { case: "get", value: "/v1/{name=shelves/*/books/*}" },
            responseBody: "book",
            additionalBindings: [{ pattern: { case: "get", value: "/v1/books/{name}" } }],
          }),
        },
        {
          name: "CreateBook",
          inputType: ".edgetest.v1.CreateBookRequest",
          outputType: ".edgetest.v1.Book",
          options: rule({ pattern: { case: "post", value: "/v1/{parent=shelves/*}/books" }, body: "*" }),
        },
        {
          name: "UpdateBook",
          inputType: ".edgetest.v1.UpdateBookRequest",
          outputType: ".edgetest.v1.Book",
          options: rule({ pattern: { case: "patch", value: "/v1/{book.name=shelves/*/books/*}" }, body: "book" }),
        },
        {
          name: "ArchiveBook",
          inputType: ".edgetest.v1.GetBookRequest",
          outputType: ".edgetest.v1.GetBookResponse",
          options: rule({ pattern: { case: "custom", value: { kind: "POST", path: "/v1/{name=shelves/*/books/*}:archive" } }, body: "*" }),
        },
        {
          name: "GetFile",
          inputType: ".edgetest.v1.FileRequest",
          outputType: ".edgetest.v1.FileRequest",
          options: rule({ pattern: { case: "get", value: "/v1/files/{path=**}" } }),
        },
      ],
    },
  ],
});

const dependencies: Record<string, DescFile> = {
  "google/api/annotations.proto": file_google_api_annotations,
  "google/protobuf/timestamp.proto": file_google_protobuf_timestamp,
};

const registry = createFileRegistry(fileProto, (name) => dependencies[name]);

export const Library: DescService = registry.getService("edgetest.v1.Library")!;
