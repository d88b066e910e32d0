import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, DurationSchema, type Any, type Duration } from "@bufbuild/protobuf/wkt";
import { ClusterSchema, Cluster_DiscoveryType, Cluster_LbPolicy, type Cluster } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ApiVersion, ConfigSourceSchema } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { ClusterLoadAssignmentSchema, type ClusterLoadAssignment } from "../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { ListenerSchema, type Listener } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema, type RouteConfiguration } from "../../gen/envoy/config/route/v3/route_pb.js";
import { CorsPolicySchema, CorsSchema } from "../../gen/envoy/extensions/filters/http/cors/v3/cors_pb.js";
import { GrpcJsonTranscoderSchema } from "../../gen/envoy/extensions/filters/http/grpc_json_transcoder/v3/transcoder_pb.js";
import { GrpcWebSchema } from "../../gen/envoy/extensions/filters/http/grpc_web/v3/grpc_web_pb.js";
import { RouterSchema } from "../../gen/envoy/extensions/filters/http/router/v3/router_pb.js";
import {
  HttpConnectionManagerSchema,
  HttpConnectionManager_CodecType,
} from "../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { SubjectAltNameMatcher_SanType } from "../../gen/envoy/extensions/transport_sockets/tls/v3/common_pb.js";
import { SecretSchema, type Secret } from "../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { UpstreamTlsContextSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { HttpProtocolOptionsSchema } from "../../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";

import { ROUTED_SERVICES, type RoutedService } from "./routed-services.js";

export { ROUTED_SERVICES, type RoutedService };

/** gRPC services the transcoder exposes as REST (google.api.http); realtime is gRPC/gRPC-web only. */
const TRANSCODED_SERVICES = ["umw.v1.QueryService", "umw.v1.CommandService"];

/**
 * Request headers only the mesh may set: a client that sends them is not believed. The Node edge
 * strips the same (services/edge/forwarded-headers.ts); Envoy removes them before routing.
 */
export const MESH_ONLY_HEADERS = ["x-umw-principal", "x-umw-connection-id", "x-umw-tenant", "x-umw-token-expires-at"];

/** Names of the TLS secrets the clusters refer to; their files are in the bootstrap (see bootstrap.ts). */
export const SECRET = { identity: "umw-identity", ca: "umw-mesh-ca" } as const;

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface EdgeOptions {
  /** Port of the edge listener. */
  readonly listenerPort: number;
  /** The descriptor set with the umw services and google.rpc error details: a file path for Envoy, or its bytes. */
  readonly descriptor: { readonly path: string } | { readonly bytes: Uint8Array };
  /** CORS origins; `*` allows any. */
  readonly corsOrigins: readonly string[];
}

const seconds = (value: number): Duration => create(DurationSchema, { seconds: BigInt(Math.floor(value)), nanos: Math.round((value % 1) * 1e9) });
const pack = <D extends DescMessage>(schema: D, init: MessageInitShape<D>): Any => anyPack(schema, create(schema, init) as MessageShape<D>);
export const ADS: MessageInitShape<typeof ConfigSourceSchema> = { configSourceSpecifier: { case: "ads", value: {} }, resourceApiVersion: ApiVersion.V3 };

/** Retries that cannot repeat work: the request never reached a service (or, for reads, any failure). */
const RETRY_ON: Record<RoutedService, string> = {
  query: "connect-failure,refused-stream,reset,unavailable",
  command: "connect-failure,refused-stream",
  realtime: "connect-failure,refused-stream",
};

/** The edge's routes: one prefix per gRPC service; REST is transcoded to these paths first. */
export function edgeRoutes(name: string, options: Pick<EdgeOptions, "corsOrigins">): RouteConfiguration {
  const corsPolicy: MessageInitShape<typeof CorsPolicySchema> = {
    allowOriginStringMatch: corsOrigins(options.corsOrigins),
    allowMethods: "GET, PUT, POST, PATCH, DELETE, OPTIONS",
    allowHeaders:
      "authorization, content-type, idempotency-key, if-match, if-none-match, x-grpc-web, x-user-agent, grpc-timeout, connect-protocol-version, connect-timeout-ms",
    exposeHeaders: "cache-status, etag, location, grpc-status, grpc-message, grpc-status-details-bin",
    maxAge: "600",
  };
  return create(RouteConfigurationSchema, {
    name,
    requestHeadersToRemove: MESH_ONLY_HEADERS,
    virtualHosts: [
      {
        name: "umw",
        domains: ["*"],
        typedPerFilterConfig: { "envoy.filters.http.cors": pack(CorsPolicySchema, corsPolicy) },
        routes: [
          ...(["query", "command"] as const).map((service) => ({
            match: { pathSpecifier: { case: "prefix" as const, value: `/umw.v1.${service === "query" ? "QueryService" : "CommandService"}/` } },
            action: {
              case: "route" as const,
              value: {
                clusterSpecifier: { case: "cluster" as const, value: service },
                timeout: seconds(10),
                retryPolicy: { retryOn: RETRY_ON[service], numRetries: 2 },
              },
            },
          })),
          {
            match: { pathSpecifier: { case: "prefix", value: "/umw.v1.RealtimeService/" } },
            // Server-streaming: no route timeout; idle streams are kept alive by heartbeats.
            action: {
              case: "route",
              value: { clusterSpecifier: { case: "cluster", value: "realtime" }, timeout: seconds(0), retryPolicy: { retryOn: RETRY_ON.realtime, numRetries: 2 } },
            },
          },
        ],
      },
    ],
  });
}

/** The CORS policy allows any origin with `*`, else exactly the listed ones. */
function corsOrigins(origins: readonly string[]) {
  return origins.includes("*")
    ? [{ matchPattern: { case: "safeRegex" as const, value: { regex: ".*" } } }]
    : origins.map((origin) => ({ matchPattern: { case: "exact" as const, value: origin } }));
}

/**
 * The edge listener: CORS, gRPC-web, REST transcoding and the router. Routes come inline (static
 * configuration) or by RDS from the control plane (`rds` = the route configuration's name).
 */
export function edgeListener(options: EdgeOptions, routes: { inline: RouteConfiguration } | { rds: string }): Listener {
  const routeConfig = "inline" in routes ? routes.inline : undefined;
  return create(ListenerSchema, {
    name: "edge",
    address: { address: { case: "socketAddress", value: { address: "0.0.0.0", portSpecifier: { case: "portValue", value: options.listenerPort } } } },
    filterChains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            configType: {
              case: "typedConfig",
              value: pack(HttpConnectionManagerSchema, {
                statPrefix: "edge",
                codecType: HttpConnectionManager_CodecType.AUTO,
                requestTimeout: seconds(0),
                streamIdleTimeout: seconds(300),
                routeSpecifier: routeConfig
                  ? { case: "routeConfig", value: routeConfig }
                  : { case: "rds", value: { routeConfigName: (routes as { rds: string }).rds, configSource: ADS } },
                httpFilters: [
                  { name: "envoy.filters.http.cors", configType: { case: "typedConfig", value: pack(CorsSchema, {}) } },
                  { name: "envoy.filters.http.grpc_web", configType: { case: "typedConfig", value: pack(GrpcWebSchema, {}) } },
                  {
                    name: "envoy.filters.http.grpc_json_transcoder",
                    configType: {
                      case: "typedConfig",
                      value: pack(GrpcJsonTranscoderSchema, {
                        descriptorSet:
                          "path" in options.descriptor
                            ? { case: "protoDescriptor", value: options.descriptor.path }
                            : { case: "protoDescriptorBin", value: options.descriptor.bytes },
                        services: TRANSCODED_SERVICES,
                        autoMapping: false,
                        convertGrpcStatus: true,
                        printOptions: { alwaysPrintPrimitiveFields: false, preserveProtoFieldNames: false },
                        requestValidationOptions: { rejectUnknownMethod: true, rejectUnknownQueryParameters: true },
                      }),
                    },
                  },
                  { name: "envoy.filters.http.router", configType: { case: "typedConfig", value: pack(RouterSchema, {}) } },
                ],
              }),
            },
          },
        ],
      },
    ],
  });
}

/** How each mesh cluster finds its endpoints: EDS from the control plane, or DNS names (static configuration). */
export type ClusterDiscovery = { readonly eds: true } | { readonly dns: Endpoint };

/**
 * One mesh service's cluster: HTTP/2 over mTLS (ALPN h2; the service's certificate must name it),
 * gRPC health checks, and ejection of instances that fail them or keep failing requests.
 */
export function meshCluster(service: RoutedService, discovery: ClusterDiscovery): Cluster {
  return create(ClusterSchema, {
    name: service,
    connectTimeout: seconds(2),
    lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
    ...("eds" in discovery
      ? {
          clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.EDS },
          edsClusterConfig: { edsConfig: ADS },
          // An instance the control plane dropped leaves now, even while it still passes health checks.
          ignoreHealthOnHostRemoval: true,
        }
      : {
          clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STRICT_DNS },
          loadAssignment: loadAssignment(service, [discovery.dns]),
        }),
    typedExtensionProtocolOptions: {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": pack(HttpProtocolOptionsSchema, {
        upstreamProtocolOptions: { case: "explicitHttpConfig", value: { protocolConfig: { case: "http2ProtocolOptions", value: {} } } },
      }),
    },
    healthChecks: [
      {
        timeout: seconds(1),
        interval: seconds(1),
        noTrafficInterval: seconds(2),
        unhealthyThreshold: 2,
        healthyThreshold: 1,
        healthChecker: { case: "grpcHealthCheck", value: {} },
      },
    ],
    outlierDetection: { consecutiveGatewayFailure: 2, consecutive5xx: 5, interval: seconds(1), baseEjectionTime: seconds(10), maxEjectionPercent: 50 },
    transportSocket: upstreamTls(service),
  });
}

/** mTLS to a mesh member: ALPN h2 (grpc-js requires it), and its certificate must carry `san` as a DNS name. */
export function upstreamTls(san: string) {
  return {
    name: "envoy.transport_sockets.tls",
    configType: {
      case: "typedConfig" as const,
      value: pack(UpstreamTlsContextSchema, {
        sni: san,
        commonTlsContext: {
          alpnProtocols: ["h2"],
          tlsCertificateSdsSecretConfigs: [{ name: SECRET.identity }],
          validationContextType: {
            case: "combinedValidationContext",
            value: {
              defaultValidationContext: {
                matchTypedSubjectAltNames: [{ sanType: SubjectAltNameMatcher_SanType.DNS, matcher: { matchPattern: { case: "exact", value: san } } }],
              },
              validationContextSdsSecretConfig: { name: SECRET.ca },
            },
          },
        },
      }),
    },
  };
}

export function loadAssignment(service: string, endpoints: readonly Endpoint[]): ClusterLoadAssignment {
  return create(ClusterLoadAssignmentSchema, {
    clusterName: service,
    endpoints: [
      {
        lbEndpoints: endpoints.map((endpoint) => ({
          hostIdentifier: {
            case: "endpoint" as const,
            value: { address: { address: { case: "socketAddress" as const, value: { address: endpoint.host, portSpecifier: { case: "portValue" as const, value: endpoint.port } } } } },
          },
        })),
      },
    ],
  });
}

/** The TLS files of Envoy's own mesh identity and of the mesh CA, as the secrets the clusters name. */
export function meshSecrets(certsDir: string, identity: string): Secret[] {
  return [
    create(SecretSchema, {
      name: SECRET.identity,
      type: {
        case: "tlsCertificate",
        value: {
          certificateChain: { specifier: { case: "filename", value: `${certsDir}/${identity}.crt` } },
          privateKey: { specifier: { case: "filename", value: `${certsDir}/${identity}.key` } },
        },
      },
    }),
    create(SecretSchema, { name: SECRET.ca, type: { case: "validationContext", value: { trustedCa: { specifier: { case: "filename", value: `${certsDir}/ca.crt` } } } } }),
  ];
}
