/**
 * The descriptor Envoy sends to the rate limit service for every request (route rate_limits
 * actions, services/control-plane/rate-limit-filter.ts), and the domain it sends it in. The service
 * keys the same buckets as the Node edge from it.
 */
export const RATE_LIMIT_DOMAIN = "umw";

export const DESCRIPTOR_KEYS = {
  /** `:method` of the request as the client sent it. */
  method: "method",
  /** `:path` (with the query) before transcoding: the REST path, or `/umw.v1.X/Method` for gRPC, gRPC-web and Connect. */
  path: "path",
  /** The client's address (Envoy's `remote_address` action). */
  remoteAddress: "remote_address",
  /** The request's content type, when it has one: `application/grpc…` calls get their refusal as gRPC status. */
  contentType: "content_type",
} as const;
