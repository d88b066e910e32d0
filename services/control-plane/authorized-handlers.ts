import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { MeshAuthorization } from "../../runtime/mesh-authorization.js";
import { peerIdentity } from "../../runtime/tls.js";

/**
 * grpc-js handlers of one service behind the mesh authorization table: the control plane serves
 * with a plain grpc-js server (xDS is not a protobuf-es service), so it checks here what
 * MeshServer's interceptor checks for the other services.
 */
export function authorizedHandlers(definition: ServiceDefinition, handlers: UntypedServiceImplementation, authorization: MeshAuthorization | undefined): UntypedServiceImplementation {
  if (!authorization) return handlers;
  const guarded: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    const method = definition[name];
    if (!method) throw new Error(`${name} is not a method of the service`);
    const path = method.path.slice(1);
    const unary = !method.requestStream && !method.responseStream;
    guarded[name] = ((call: Parameters<typeof peerIdentity>[0] & { metadata: { getMap(): Record<string, unknown> }; emit(event: "error", error: unknown): boolean }, callback?: (error: unknown) => void) => {
      const headers: Record<string, string> = {};
      for (const [key, value] of Object.entries(call.metadata.getMap())) if (typeof value === "string") headers[key] = value;
      const denied = authorization.check({ peer: peerIdentity(call), method: path, headers });
      if (!denied) return (handler as (...args: unknown[]) => unknown)(call, callback);
      if (unary) callback!(denied.toServiceError());
      // As MeshServer ends a refused stream: the status, with its details, as the stream's error.
      else call.emit("error", denied.toServiceError());
    }) as never;
  }
  return guarded;
}
