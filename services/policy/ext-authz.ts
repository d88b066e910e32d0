import { create, fromBinary, toBinary, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { Authorization, CheckResponseSchema, type CheckRequest } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../../gen/umw/v1/realtime_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { Code, ERROR_DOMAIN } from "../../runtime/errors.js";
import { principalOf } from "../../runtime/principal.js";
import type { ServiceHandlers } from "../../runtime/service-definition.js";
import type { AuthzPolicy } from "./authz-policy.js";
import { denial } from "./denial.js";
import { methodName, requestInput } from "./request-input.js";

/** The services Envoy routes to, by gRPC path: what ext_authz (after the transcoder) sees. */
const EDGE_SERVICES: readonly DescService[] = [QueryService, CommandService, RealtimeService];
const METHODS = new Map<string, DescMethod>(EDGE_SERVICES.flatMap((service) => service.methods.map((method) => [`/${methodName(method)}`, method] as const)));

/** gRPC length-prefixed framing: 1 byte compressed flag, 4 bytes big-endian length, then the message. */
function firstMessage(method: DescMethod, body: Uint8Array): Message | undefined {
  if (body.length < 5 || body[0] !== 0) return undefined;
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1);
  if (body.length < 5 + length) return undefined;
  try {
    return fromBinary(method.input, body.subarray(5, 5 + length));
  } catch {
    return undefined;
  }
}

const HTTP_STATUS: Partial<Record<Code, number>> = { [Code.UNAUTHENTICATED]: 401, [Code.PERMISSION_DENIED]: 403 };

/**
 * envoy.service.auth.v3.Authorization: Envoy's ext_authz filter asks before routing. It runs after
 * the transcoder and the gRPC-web and Connect bridges, so every request it sees is gRPC: the path
 * names the method and the body (sent as raw bytes) is the framed request message, whose `tenant`
 * field is what the policy compares. The principal comes from the x-umw-* headers the filters
 * before it set (jwt_authn), believed only when Envoy's identity is a trusted peer, exactly as
 * principalOf believes them at the service; without them the request is Envoy's own.
 *
 * A path that names no method of a routed service is let through: Envoy answers it itself (404,
 * 405, /healthz). A gRPC request whose body cannot be read here (a compressed frame, say) is
 * decided on method and scope alone, with no tenant: the mesh server behind decodes it and decides
 * again with its tenant (the same policy in its interceptor, then runtime/tenant-guard.ts).
 */
export function extAuthzHandlers(policy: AuthzPolicy, trustedPeers: ReadonlySet<string>): ServiceHandlers<typeof Authorization> {
  return {
    async check(request: CheckRequest, ctx: CallContext) {
      const http = request.attributes?.request?.http;
      const path = (http?.path ?? "").split("?")[0]!;
      const method = METHODS.get(path);
      if (!method) return { status: { code: Code.OK }, httpResponse: { case: "okResponse", value: {} } };
      const headers = http?.headers ?? {};
      const principal = principalOf({ headers, peer: ctx.peer }, trustedPeers);
      const message = http?.rawBody.length ? firstMessage(method, http.rawBody) : undefined;
      const input = requestInput(methodName(method), message, principal);
      const decision = policy.decide(input);
      if (decision.allow) return { status: { code: Code.OK }, httpResponse: { case: "okResponse", value: {} } };
      const error = denial(decision.reason, input);
      const status = error.toStatus();
      return create(CheckResponseSchema, {
        status: { code: status.code, message: status.message },
        httpResponse: {
          case: "deniedResponse",
          value: {
            status: { code: HTTP_STATUS[status.code as Code] ?? 403 },
            headers: [
              { header: { key: "content-type", value: "application/json" } },
              { header: { key: "grpc-status", value: String(status.code) } },
              { header: { key: "grpc-message", value: encodeURIComponent(status.message) } },
              { header: { key: "grpc-status-details-bin", value: Buffer.from(toBinary(StatusSchema, status)).toString("base64").replace(/=+$/, "") } },
            ],
            body: JSON.stringify({
              code: status.code,
              message: status.message,
              details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: error.reason, domain: ERROR_DOMAIN, metadata: error.metadata }],
            }),
          },
        },
      });
    },
  };
}
