import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  DeregisterResponseSchema,
  RegisterResponseSchema,
  type DeregisterRequest,
  type DeregisterResponse,
  type RegisterRequest,
  type RegisterResponse,
} from "../../gen/umw/controlplane/v1/registration_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import type { Logger } from "../../runtime/logger.js";
import { peerIdentity } from "../../runtime/tls.js";
import { ROUTED_SERVICES, type Endpoint, type RoutedService } from "./edge-resources.js";
import { keyOf, type EndpointTable } from "./endpoint-table.js";

export interface RegistrationOptions {
  readonly table: EndpointTable;
  readonly log: Logger;
  /** Resolves once connected Envoys applied the endpoints without the instance (or the bound passed). */
  readonly settled: () => Promise<boolean>;
}

/** grpc-js handlers of umw.controlplane.v1.RegistrationService. */
export function registrationHandlers({ table, log, settled }: RegistrationOptions) {
  return {
    register(call: ServerWritableStream<RegisterRequest, RegisterResponse>): void {
      let instance: { service: RoutedService; endpoint: Endpoint };
      try {
        instance = admit(call, call.request);
      } catch (error) {
        call.destroy(Object.assign(new Error((error as RpcError).message), (error as RpcError).toServiceError()));
        return;
      }
      table.add(instance.service, instance.endpoint);
      log.info({ service: instance.service, endpoint: keyOf(instance.endpoint) }, "instance registered");
      let open = true;
      const leave = () => {
        if (!open) return;
        open = false;
        if (table.remove(instance.service, instance.endpoint)) log.info({ service: instance.service, endpoint: keyOf(instance.endpoint) }, "instance gone");
      };
      call.on("cancelled", leave);
      call.on("close", leave);
      call.on("error", leave);
      call.write(create(RegisterResponseSchema, { endpoint: keyOf(instance.endpoint) }));
    },

    deregister(call: ServerUnaryCall<DeregisterRequest, DeregisterResponse>, callback: sendUnaryData<DeregisterResponse>): void {
      let instance: { service: RoutedService; endpoint: Endpoint };
      try {
        instance = admit(call, call.request);
      } catch (error) {
        callback((error as RpcError).toServiceError());
        return;
      }
      table.remove(instance.service, instance.endpoint, true);
      log.info({ service: instance.service, endpoint: keyOf(instance.endpoint) }, "instance deregistered");
      settled().then(
        (applied) => callback(null, create(DeregisterResponseSchema, { applied })),
        (error: unknown) => callback(new RpcError(Code.INTERNAL, "DEREGISTER_FAILED", (error as Error).message).toServiceError()),
      );
    },
  };
}

/** The instance a call speaks for: a routed service, asked for by that service's own certificate. */
function admit(
  call: Pick<ServerUnaryCall<unknown, unknown>, "getAuthContext" | "getPeer">,
  request: { service: string; host: string; port: number },
): { service: RoutedService; endpoint: Endpoint } {
  if (!(ROUTED_SERVICES as readonly string[]).includes(request.service)) {
    throw new RpcError(Code.INVALID_ARGUMENT, "UNKNOWN_SERVICE", `service must be one of ${ROUTED_SERVICES.join(", ")}, not ${JSON.stringify(request.service)}`);
  }
  const caller = peerIdentity(call);
  if (caller !== request.service) {
    throw new RpcError(Code.PERMISSION_DENIED, "NOT_THIS_SERVICE", `${caller ?? "an unknown peer"} may not register instances of ${request.service}`);
  }
  if (!Number.isInteger(request.port) || request.port < 1 || request.port > 65_535) {
    throw new RpcError(Code.INVALID_ARGUMENT, "INVALID_PORT", `port must be 1-65535, not ${request.port}`);
  }
  const wildcard = request.host === "" || request.host === "0.0.0.0" || request.host === "::";
  return { service: request.service as RoutedService, endpoint: { host: wildcard ? peerHost(call.getPeer()) : request.host, port: request.port } };
}

/** "1.2.3.4:5678", "[::1]:5678" or "::ffff:1.2.3.4:5678" → the IP Envoy can dial. */
export function peerHost(peer: string): string {
  const host = peer.slice(0, peer.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  return host.startsWith("::ffff:") ? host.slice(7) : host;
}
