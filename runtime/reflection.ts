import {
  create,
  createRegistry,
  fromBinary,
  toBinary,
  type DescFile,
  type DescMessage,
  type DescMethodBiDiStreaming,
  type MessageShape,
  type DescService,
  type MessageInitShape,
  type Registry,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { status, type MethodDefinition, type Server, type ServerDuplexStream, type ServiceDefinition } from "@grpc/grpc-js";
import { file_google_rpc_error_details } from "../gen/google/rpc/error_details_pb.js";
import { file_google_rpc_status } from "../gen/google/rpc/status_pb.js";
import { Health } from "../gen/health/v1/health_pb.js";
import {
  ServerReflection,
  type ServerReflectionRequest,
  type ServerReflectionResponseSchema,
} from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

type Answer = MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];

/**
 * Serves grpc.reflection v1 and v1alpha for the given services, Health and reflection itself. Every
 * file is answered with its real FileDescriptorProto (the one protobuf-es generated code embeds),
 * followed by everything it imports, so a client such as grpcurl can build each type. The error
 * details umw sends (google.rpc.Status, ErrorInfo; runtime/errors.ts) are described too, so such a
 * client can decode them.
 */
export function addReflection(server: Server, services: readonly DescService[]): void {
  const index = new DescriptorIndex([...services, Health, ServerReflection, ServerReflectionV1Alpha], [file_google_rpc_status, file_google_rpc_error_details]);
  // v1alpha has the same messages as v1 (names, numbers, types), so one answer serves both.
  const methods: DescMethodBiDiStreaming[] = [ServerReflection.method.serverReflectionInfo, ServerReflectionV1Alpha.method.serverReflectionInfo];
  for (const method of methods) {
    server.addService(bidiDefinition(method), {
      [method.localName]: (call: ServerDuplexStream<ServerReflectionRequest, unknown>) => {
        call.on("data", (request: ServerReflectionRequest) =>
          call.write(create(method.output, { validHost: request.host, originalRequest: request, messageResponse: index.answer(request) })),
        );
        call.on("end", () => call.end());
        call.on("error", () => undefined);
      },
    });
  }
}

/** Reflection's answers over a closed set of files: the services' files, the extra files, and all they import. */
export class DescriptorIndex {
  private readonly serviceNames: string[];
  /** By file name as imports spell it ("umw/v1/query.proto"; DescFile.name drops the ".proto"). */
  private readonly files = new Map<string, DescFile>();
  private readonly registry: Registry;

  constructor(services: readonly DescService[], extraFiles: readonly DescFile[] = []) {
    this.serviceNames = services.map((service) => service.typeName);
    const visit = (file: DescFile) => {
      if (this.files.has(file.proto.name)) return;
      this.files.set(file.proto.name, file);
      for (const dependency of file.dependencies) visit(dependency);
    };
    for (const file of [...services.map((service) => service.file), ...extraFiles]) visit(file);
    this.registry = createRegistry(...this.files.values());
  }

  answer(request: ServerReflectionRequest): Answer {
    const { messageRequest } = request;
    switch (messageRequest.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: this.serviceNames.map((name) => ({ name })) } };
      case "fileByFilename":
        return this.fileResponse(this.files.get(messageRequest.value), `no file named "${messageRequest.value}"`);
      case "fileContainingSymbol":
        return this.fileResponse(this.fileOfSymbol(messageRequest.value), `no symbol named "${messageRequest.value}"`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = messageRequest.value;
        const extendee = this.registry.getMessage(containingType);
        const extension = extendee && this.registry.getExtensionFor(extendee, extensionNumber);
        return this.fileResponse(extension?.file, `no extension ${extensionNumber} of "${containingType}"`);
      }
      case "allExtensionNumbersOfType": {
        const name = messageRequest.value;
        if (!this.registry.getMessage(name)) return notFound(`no message named "${name}"`);
        const numbers: number[] = [];
        for (const desc of this.registry) if (desc.kind === "extension" && desc.extendee.typeName === name) numbers.push(desc.number);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: name, extensionNumber: numbers.sort((a, b) => a - b) } };
      }
      default:
        return { case: "errorResponse", value: { errorCode: status.INVALID_ARGUMENT, errorMessage: "empty reflection request" } };
    }
  }

  /** A package-qualified type, service or extension, or a method, field or oneof inside one. */
  private fileOfSymbol(symbol: string): DescFile | undefined {
    const desc = this.registry.get(symbol);
    if (desc) return desc.file;
    const dot = symbol.lastIndexOf(".");
    if (dot < 0) return undefined;
    const parent = this.registry.get(symbol.slice(0, dot));
    const member = symbol.slice(dot + 1);
    if (parent?.kind === "service") return parent.methods.some((method) => method.name === member) ? parent.file : undefined;
    if (parent?.kind === "message") return hasMember(parent, member) ? parent.file : undefined;
    return undefined;
  }

  /** The file first, then every file it imports, directly or not, each once. */
  private fileResponse(file: DescFile | undefined, missing: string): Answer {
    if (!file) return notFound(missing);
    const closure = new Map<string, DescFile>();
    const visit = (current: DescFile) => {
      if (closure.has(current.proto.name)) return;
      closure.set(current.proto.name, current);
      for (const dependency of current.dependencies) visit(dependency);
    };
    visit(file);
    const fileDescriptorProto = [...closure.values()].map((current) => toBinary(FileDescriptorProtoSchema, current.proto));
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto } };
  }
}

function hasMember(message: DescMessage, name: string): boolean {
  return message.fields.some((field) => field.name === name) || message.oneofs.some((oneof) => oneof.name === name);
}

function notFound(errorMessage: string): Answer {
  return { case: "errorResponse", value: { errorCode: status.NOT_FOUND, errorMessage } };
}

/** grpc-js definition of a bidi-streaming method (runtime/service-definition.ts serves the others). */
function bidiDefinition<I extends DescMessage, O extends DescMessage>(method: DescMethodBiDiStreaming<I, O>): ServiceDefinition {
  const definition: MethodDefinition<MessageShape<I>, MessageShape<O>> = {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (value) => Buffer.from(toBinary(method.input, value)),
    requestDeserialize: (bytes) => fromBinary(method.input, bytes),
    responseSerialize: (value) => Buffer.from(toBinary(method.output, value)),
    responseDeserialize: (bytes) => fromBinary(method.output, bytes),
    originalName: method.name,
  };
  return { [method.localName]: definition };
}
