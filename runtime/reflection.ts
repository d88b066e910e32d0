import { loadFileDescriptorSetFromBuffer, loadSync, type PackageDefinition } from "@grpc/proto-loader";
import { create, toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import { protoPath as healthProtoPath } from "grpc-health-check";
import type { Server } from "@grpc/grpc-js";

/** Serves grpc.reflection (v1 and v1alpha) for the given services, their dependencies and Health. */
export function addReflection(server: Server, services: readonly DescService[]): void {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file.name)) return;
    for (const dependency of file.dependencies) visit(dependency);
    files.set(file.name, file);
  };
  for (const service of services) visit(service.file);
  const set = create(FileDescriptorSetSchema, { file: [...files.values()].map((file) => file.proto) });
  const definition: PackageDefinition = {
    ...loadFileDescriptorSetFromBuffer(Buffer.from(toBinary(FileDescriptorSetSchema, set))),
    ...loadSync(healthProtoPath),
  };
  new ReflectionService(definition).addToServer(server);
}
