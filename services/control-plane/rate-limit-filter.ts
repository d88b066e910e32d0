import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, DurationSchema, type Any } from "@bufbuild/protobuf/wkt";
import { ClusterSchema, Cluster_DiscoveryType, Cluster_LbPolicy, type Cluster } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ApiVersion } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import type { RateLimitSchema as RouteRateLimitSchema } from "../../gen/envoy/config/route/v3/route_components_pb.js";
import { RateLimitSchema } from "../../gen/envoy/extensions/filters/http/ratelimit/v3/rate_limit_pb.js";
import { HttpProtocolOptionsSchema } from "../../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";
import { StatusCode } from "../../gen/envoy/type/v3/http_status_pb.js";
import { DESCRIPTOR_KEYS, RATE_LIMIT_DOMAIN } from "../ratelimit/envoy-descriptor.js";

/** Envoy's side of the rate limits: where umw's rate limit service is, and what to do when it cannot answer. */
export interface EnvoyRateLimitOptions {
  /** host:port of `umw serve ratelimit` (mTLS; its certificate must name `ratelimit`). */
  readonly service: { readonly host: string; readonly port: number };
  /** `closed`: a request is refused (503) when the service cannot answer; `open`: it goes on. */
  readonly failureMode: "open" | "closed";
  /** How long Envoy waits for the service's answer. */
  readonly timeoutMs: number;
}

export const RATE_LIMIT_CLUSTER = "ratelimit";

const pack = <D extends DescMessage>(schema: D, init: MessageInitShape<D>): Any => anyPack(schema, create(schema, init) as MessageShape<D>);

/**
 * The rate limit filter, after gRPC-web (a refused gRPC-web call gets its status the gRPC way, in
 * trailers the gRPC-web filter turns into its trailer frame) and before the transcoder (it sees the
 * REST path and query as the client sent them); none without a service.
 */
export function rateLimitFilters(options: EnvoyRateLimitOptions | undefined) {
  if (!options) return [];
  return [
    {
      name: "envoy.filters.http.ratelimit",
      configType: {
        case: "typedConfig" as const,
        value: pack(RateLimitSchema, {
          domain: RATE_LIMIT_DOMAIN,
          timeout: create(DurationSchema, { seconds: BigInt(Math.floor(options.timeoutMs / 1000)), nanos: (options.timeoutMs % 1000) * 1_000_000 }),
          failureModeDeny: options.failureMode === "closed",
          statusOnError: { code: StatusCode.ServiceUnavailable },
          // gRPC callers get RESOURCE_EXHAUSTED (as from the Node edge), not UNAVAILABLE.
          rateLimitedAsResourceExhausted: true,
          rateLimitService: {
            grpcService: { targetSpecifier: { case: "envoyGrpc", value: { clusterName: RATE_LIMIT_CLUSTER } } },
            transportApiVersion: ApiVersion.V3,
          },
        }),
      },
    },
  ];
}

/** The descriptor of every request on the virtual host: method, path (with query), client address (services/ratelimit keys it). */
export function rateLimitActions(options: EnvoyRateLimitOptions | undefined): MessageInitShape<typeof RouteRateLimitSchema>[] {
  if (!options) return [];
  return [
    {
      actions: [
        { actionSpecifier: { case: "requestHeaders", value: { headerName: ":method", descriptorKey: DESCRIPTOR_KEYS.method } } },
        { actionSpecifier: { case: "requestHeaders", value: { headerName: ":path", descriptorKey: DESCRIPTOR_KEYS.path } } },
        { actionSpecifier: { case: "remoteAddress", value: {} } },
        { actionSpecifier: { case: "requestHeaders", value: { headerName: "content-type", descriptorKey: DESCRIPTOR_KEYS.contentType, skipIfAbsent: true } } },
      ],
    },
  ];
}

/** The cluster of umw's rate limit service: HTTP/2 over mTLS, found by DNS. */
export function rateLimitClusters(options: EnvoyRateLimitOptions | undefined, upstreamTls: (san: string) => MessageInitShape<typeof ClusterSchema>["transportSocket"]): Cluster[] {
  if (!options) return [];
  const { host, port } = options.service;
  return [
    create(ClusterSchema, {
      name: RATE_LIMIT_CLUSTER,
      connectTimeout: create(DurationSchema, { seconds: 1n }),
      lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
      clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STRICT_DNS },
      loadAssignment: {
        clusterName: RATE_LIMIT_CLUSTER,
        endpoints: [{ lbEndpoints: [{ hostIdentifier: { case: "endpoint", value: { address: { address: { case: "socketAddress", value: { address: host, portSpecifier: { case: "portValue", value: port } } } } } } }] }],
      },
      typedExtensionProtocolOptions: {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": pack(HttpProtocolOptionsSchema, {
          upstreamProtocolOptions: { case: "explicitHttpConfig", value: { protocolConfig: { case: "http2ProtocolOptions", value: {} } } },
        }),
      },
      transportSocket: upstreamTls(RATE_LIMIT_CLUSTER),
    }),
  ];
}
