import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import type { AccessLogFilterSchema } from "../../gen/envoy/config/accesslog/v3/accesslog_pb.js";
import { HeaderValueOption_HeaderAppendAction } from "../../gen/envoy/config/core/v3/base_pb.js";
import type { LocalReplyConfigSchema } from "../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { ComparisonFilter_Op } from "../../gen/envoy/config/accesslog/v3/accesslog_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { Code, ERROR_DOMAIN } from "../../runtime/errors.js";
import { statusEncodings } from "../../runtime/status-encodings.js";
import { CALLER_PROTOCOL_NAMESPACE } from "./ext-authz-filter.js";
import { statusJson } from "./rest-conventions.js";

/** Seconds a caller should wait before retrying when the policy service did not answer. */
const AUTHZ_RETRY_AFTER_S = "1";
const AUTHZ_MESSAGE = "the authorization check could not be made in time; retry";
const RATE_LIMITED_MESSAGE = "a rate limit is used up; retry after Retry-After";

type Filter = MessageInitShape<typeof AccessLogFilterSchema>;
type Header = { key: string; value: string };

const all = (...filters: Filter[]): Filter => ({ filterSpecifier: { case: "andFilter", value: { filters } } });
const flag = (name: string): Filter => ({ filterSpecifier: { case: "responseFlagFilter", value: { flags: [name] } } });
const status = (code: number): Filter => ({
  filterSpecifier: { case: "statusCodeFilter", value: { comparison: { op: ComparisonFilter_Op.EQ, value: { defaultValue: code, runtimeKey: `umw.local_reply.status_${code}` } } } },
});
/**
 * A gRPC call as the filters before the local reply left it: the gRPC-web filter and the Connect
 * bridge turn gRPC-web and Connect requests into gRPC ones (content type `application/grpc`), and
 * turn the gRPC answer back into their protocol on the way out.
 */
const grpcCall: Filter = {
  filterSpecifier: { case: "headerFilter", value: { header: { name: "content-type", headerMatchSpecifier: { case: "stringMatch", value: { matchPattern: { case: "prefix", value: "application/grpc" } } } } } },
};
/** Header values are Envoy format strings: a literal `%` (percent-encoded grpc-message) is `%%`. */
/** The caller's protocol as the first filter noted it (jwt-authn.ts `protocol_of`; the bridges change the request after it). */
const callerProtocol = (protocol: string): Filter => ({
  filterSpecifier: {
    case: "metadataFilter",
    value: { matcher: { filter: CALLER_PROTOCOL_NAMESPACE, path: [{ segment: { case: "key", value: "protocol" } }], value: { matchPattern: { case: "stringMatch", value: { matchPattern: { case: "exact", value: protocol } } } } } },
  },
});
const text = (body: string, contentType: string) => ({ format: { case: "textFormatSource" as const, value: { specifier: { case: "inlineString" as const, value: body.replaceAll("%", "%%") } } }, contentType });
const headers = (list: Header[]) =>
  list.map(({ key, value }) => ({ header: { key, value: value.replaceAll("%", "%%") }, appendAction: HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD }));

/** The google.rpc.Status of an authorization check that could not be made, as gRPC trailers carry it. */
function authzUnavailable() {
  const info = create(ErrorInfoSchema, { reason: "AUTHORIZATION_UNAVAILABLE", domain: ERROR_DOMAIN, metadata: { retry_after_s: AUTHZ_RETRY_AFTER_S } });
  return statusEncodings(create(StatusSchema, { code: Code.UNAVAILABLE, message: AUTHZ_MESSAGE, details: [anyPack(ErrorInfoSchema, info)] }));
}

/**
 * Envoy's own answers in the caller's protocol (the HTTP connection manager's local reply mappers;
 * the first that matches applies):
 *
 * - the rate limit filter's refusal (response flag `RL`) of a gRPC, gRPC-web or Connect call: a
 *   gRPC answer (HTTP 200, `grpc-status: 8` RESOURCE_EXHAUSTED) that the gRPC-web filter turns into
 *   gRPC-web. `rate_limited_as_resource_exhausted` alone does not do it for gRPC-web: Envoy decides
 *   whether a local reply is gRPC from the request as it arrived (`application/grpc-web` is not
 *   `application/grpc`), so a gRPC-web caller got HTTP 429 without `grpc-status`. The
 *   `grpc-status-details-bin` (RATE_LIMITED, RetryInfo) comes from the rate limit service.
 * - ext_authz without an answer from the policy service (timeout or unreachable: flag `UAEX`, 503;
 *   the policy's own refusals carry their body and status): UNAVAILABLE with the ErrorInfo reason
 *   `AUTHORIZATION_UNAVAILABLE` and `Retry-After`, as gRPC trailers for gRPC-family calls and as
 *   google.rpc.Status JSON for REST, instead of a bodiless 503.
 */
export function localReplyConfig(): MessageInitShape<typeof LocalReplyConfigSchema> {
  const authz = authzUnavailable();
  return {
    mappers: [
      {
        filter: all(flag("RL"), grpcCall),
        statusCode: 200,
        headersToAdd: headers([
          { key: "grpc-status", value: String(Code.RESOURCE_EXHAUSTED) },
          { key: "grpc-message", value: encodeURIComponent(RATE_LIMITED_MESSAGE) },
        ]),
      },
      {
        // Connect unary: its own error body (the Connect bridge would pass on the code and message, not the details).
        filter: all(flag("UAEX"), status(503), callerProtocol("connect")),
        headersToAdd: headers([
          { key: "retry-after", value: AUTHZ_RETRY_AFTER_S },
          { key: "cache-control", value: "no-store" },
        ]),
        bodyFormatOverride: text(authz.connect, "application/json"),
      },
      {
        // A Connect stream: 200 and one end-stream frame (ASCII by construction, so a format string carries it), in the content type it asked for.
        filter: all(flag("UAEX"), status(503), callerProtocol("connect_stream")),
        statusCode: 200,
        headersToAdd: [
          ...headers([{ key: "retry-after", value: AUTHZ_RETRY_AFTER_S }]),
          { header: { key: "content-type", value: `%DYNAMIC_METADATA(${CALLER_PROTOCOL_NAMESPACE}:content_type)%` }, appendAction: HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD },
        ],
        bodyFormatOverride: text(Buffer.from(authz.connectStream).toString("latin1"), "application/connect+proto"),
      },
      {
        filter: all(flag("UAEX"), status(503), grpcCall),
        statusCode: 200,
        headersToAdd: headers([
          { key: "grpc-status", value: String(Code.UNAVAILABLE) },
          { key: "grpc-message", value: authz.grpcMessage },
          { key: "grpc-status-details-bin", value: authz.grpcDetails },
          { key: "retry-after", value: AUTHZ_RETRY_AFTER_S },
        ]),
      },
      {
        filter: all(flag("UAEX"), status(503)),
        headersToAdd: headers([
          { key: "retry-after", value: AUTHZ_RETRY_AFTER_S },
          { key: "cache-control", value: "no-store" },
        ]),
        bodyFormatOverride: text(statusJson(Code.UNAVAILABLE, "AUTHORIZATION_UNAVAILABLE", AUTHZ_MESSAGE, { retry_after_s: AUTHZ_RETRY_AFTER_S }), "application/json"),
      },
    ],
  };
}
