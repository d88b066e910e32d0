import { create } from "@bufbuild/protobuf";
import { anyPack, DurationSchema } from "@bufbuild/protobuf/wkt";
import { ApiVersion } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { ExtAuthzSchema } from "../../gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.js";

/** The cluster of the policy service (`umw serve policy`), which answers envoy.service.auth.v3.Authorization/Check. */
export const POLICY_CLUSTER = "policy";

/**
 * Where Envoy's first filter notes the caller's protocol (`protocol`: rest, connect, connect_stream,
 * grpc_web, grpc; `content_type`), passed to the check as metadata context so that a refusal can be
 * written in that protocol (services/policy/ext-authz.ts).
 */
export const CALLER_PROTOCOL_NAMESPACE = "umw.auth";

/** Largest request message the check sees whole; a bigger one is refused 413 by Envoy before the check. */
export const EXT_AUTHZ_MAX_REQUEST_BYTES = 1_048_576;

/**
 * Envoy's external authorization: before routing, every request is checked by the policy service
 * over mTLS (gRPC). It sits after the transcoder and the gRPC-web and Connect bridges, so the check
 * sees the gRPC path (the method) and, as raw bytes, the framed request message (its tenant). The
 * principal is in the x-umw-* headers the filters before it set. When the policy service cannot
 * answer, the request is refused (503), never let through.
 */
export function extAuthzFilter() {
  return {
    name: "envoy.filters.http.ext_authz",
    configType: {
      case: "typedConfig" as const,
      value: anyPack(
        ExtAuthzSchema,
        create(ExtAuthzSchema, {
          services: {
            case: "grpcService",
            value: { targetSpecifier: { case: "envoyGrpc", value: { clusterName: POLICY_CLUSTER } }, timeout: create(DurationSchema, { nanos: 500_000_000 }) },
          },
          transportApiVersion: ApiVersion.V3,
          failureModeAllow: false,
          statusOnError: { code: 503 },
          withRequestBody: { maxRequestBytes: EXT_AUTHZ_MAX_REQUEST_BYTES, allowPartialMessage: false, packAsBytes: true },
          metadataContextNamespaces: [CALLER_PROTOCOL_NAMESPACE],
        }),
      ),
    },
  };
}
