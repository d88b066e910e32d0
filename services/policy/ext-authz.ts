import { create, fromBinary, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { Authorization, CheckResponseSchema, type CheckRequest } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { JsonObject } from "@bufbuild/protobuf";
import type { Status } from "../../gen/google/rpc/status_pb.js";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../../gen/umw/v1/realtime_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { Code } from "../../runtime/errors.js";
import { principalOf } from "../../runtime/principal.js";
import type { ServiceHandlers } from "../../runtime/service-definition.js";
import type { AuthzPolicy } from "./authz-policy.js";
import { statusEncodings } from "../../runtime/status-encodings.js";
import { CALLER_PROTOCOL_NAMESPACE } from "../control-plane/ext-authz-filter.js";
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
 * The refusal as the caller reads it. A gRPC trailers-only answer (HTTP 200, `application/grpc`,
 * grpc-status, grpc-message, grpc-status-details-bin), as a service's own refusal would be, serves
 * gRPC, gRPC-web and REST: every request is gRPC at ext_authz, and the filters before it convert
 * the answer on the way out (the gRPC-web filter into gRPC-web, the transcoder into REST's
 * google.rpc.Status JSON and 401/403). Envoy's Connect bridge does too, but writes the details'
 * `type` as a type URL and the message percent-encoded, which Connect clients cannot read: a
 * Connect caller gets a Connect error made here, which the bridge passes on as it is.
 */
export function deniedResponse(status: Status, caller: JsonObject) {
  const encodings = statusEncodings(status);
  const header = (key: string, value: string) => ({ header: { key, value } });
  switch (caller.protocol) {
    case "connect":
      return { status: { code: HTTP_STATUS[status.code as Code] ?? 403 }, headers: [header("content-type", "application/json")], body: encodings.connect };
    case "connect_stream":
      return {
        status: { code: 200 },
        headers: [header("content-type", typeof caller.content_type === "string" && caller.content_type ? caller.content_type : "application/connect+proto")],
        body: Buffer.from(encodings.connectStream).toString("latin1"),
      };
    default:
      return {
        status: { code: 200 },
        headers: [header("content-type", "application/grpc"), header("grpc-status", String(status.code)), header("grpc-message", encodings.grpcMessage), header("grpc-status-details-bin", encodings.grpcDetails)],
      };
  }
}

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
 *
 * A refusal is answered in the caller's protocol with its ErrorInfo (see `deniedResponse`).
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
      const status = denial(decision.reason, input).toStatus();
      const caller = request.attributes?.metadataContext?.filterMetadata[CALLER_PROTOCOL_NAMESPACE] ?? {};
      return create(CheckResponseSchema, { status: { code: status.code, message: status.message }, httpResponse: { case: "deniedResponse", value: deniedResponse(status, caller) } });
    },
  };
}
