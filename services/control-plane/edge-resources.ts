import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, DurationSchema, type Any, type Duration } from "@bufbuild/protobuf/wkt";
import { ClusterSchema, Cluster_DiscoveryType, Cluster_LbPolicy, type Cluster } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ApiVersion, ConfigSourceSchema } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { ClusterLoadAssignmentSchema, type ClusterLoadAssignment } from "../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { ListenerSchema, type Listener } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema, type RouteConfiguration } from "../../gen/envoy/config/route/v3/route_pb.js";
import { RouteSchema } from "../../gen/envoy/config/route/v3/route_components_pb.js";
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
import { BrotliSchema } from "../../gen/envoy/extensions/compression/brotli/compressor/v3/brotli_pb.js";
import { GzipSchema } from "../../gen/envoy/extensions/compression/gzip/compressor/v3/gzip_pb.js";
import { CompressorSchema } from "../../gen/envoy/extensions/filters/http/compressor/v3/compressor_pb.js";
import { FilterConfigSchema as ConnectGrpcBridgeSchema } from "../../gen/envoy/extensions/filters/http/connect_grpc_bridge/v3/config_pb.js";
import { HealthCheckSchema } from "../../gen/envoy/extensions/filters/http/health_check/v3/health_check_pb.js";
import { JwtAuthenticationSchema } from "../../gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.js";
import { LuaSchema } from "../../gen/envoy/extensions/filters/http/lua/v3/lua_pb.js";
import { RateLimitSchema as RateLimitFilterSchema } from "../../gen/envoy/extensions/filters/http/ratelimit/v3/rate_limit_pb.js";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { certificateFiles } from "../../runtime/certs.js";
import { restPaths, restResponseLua, statusJson } from "./rest-conventions.js";
import { extAuthzFilter } from "./ext-authz-filter.js";
import { localReplyConfig } from "./local-replies.js";
import { ExtAuthzSchema } from "../../gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.js";

import { edgeTracing, type EdgeTracing } from "./edge-tracing.js";
import { jwtAuthnFilters, stripClientPrincipalFilter, type EnvoyAuthOptions } from "./jwt-authn.js";
import { ROUTED_SERVICES, type RoutedService } from "./routed-services.js";
import { rateLimitActions, rateLimitFilters, type EnvoyRateLimitOptions } from "./rate-limit-filter.js";
import { clusterCircuitBreakers, clusterOutlierDetection, commandReadRoutes, routeRetryPolicy } from "./upstream-resilience.js";

export { ROUTED_SERVICES, type RoutedService };

/** gRPC services the transcoder exposes as REST (google.api.http); realtime is gRPC/gRPC-web only. */
const TRANSCODED_SERVICES = ["umw.v1.QueryService", "umw.v1.CommandService"];

/**
 * Request headers only the mesh may set: a client that sends them is not believed. Both edges drop
 * every client-sent `x-umw-*` first (services/edge/forwarded-headers.ts; Envoy: jwt-authn.ts).
 */
export const MESH_ONLY_HEADERS = ["x-umw-principal", "x-umw-connection-id", "x-umw-tenant", "x-umw-token-expires-at", "x-umw-scopes", "x-umw-roles"];

/** Responses at least this large are compressed (gzip or br, as Accept-Encoding prefers); the Node edge uses the same threshold. */
export const COMPRESSION_MIN_BYTES = 1024;

/** The typed configs of the edge's filters beyond the core ones, for rendering them as JSON/YAML (bootstrap.ts). */
export const EDGE_FILTER_SCHEMAS = [JwtAuthenticationSchema, LuaSchema, CompressorSchema, GzipSchema, BrotliSchema, ConnectGrpcBridgeSchema, HealthCheckSchema, ExtAuthzSchema, RateLimitFilterSchema] as const;

/** REST paths and versioned responses, from the google.api.http annotations of the transcoded services. */
const REST = restPaths([QueryService, CommandService]);

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
  /** CORS origins; none when empty; `*` allows any. */
  readonly corsOrigins: readonly string[];
  /** OpenTelemetry tracing of the edge (edge-tracing.ts); unset = off. */
  readonly tracing?: EdgeTracing;
  /** Rate limits through umw's rate limit service; none when absent. */
  readonly rateLimit?: EnvoyRateLimitOptions;
  /** Bearer-token authentication (jwt_authn); undefined = none (UMW_AUTH_MODE=none). */
  readonly auth?: EnvoyAuthOptions;
}

const seconds = (value: number): Duration => create(DurationSchema, { seconds: BigInt(Math.floor(value)), nanos: Math.round((value % 1) * 1e9) });
const pack = <D extends DescMessage>(schema: D, init: MessageInitShape<D>): Any => anyPack(schema, create(schema, init) as MessageShape<D>);
export const ADS: MessageInitShape<typeof ConfigSourceSchema> = { configSourceSpecifier: { case: "ads", value: {} }, resourceApiVersion: ApiVersion.V3 };

/** The edge's routes: one prefix per gRPC service; REST is transcoded to these paths first. */
export function edgeRoutes(name: string, options: Pick<EdgeOptions, "corsOrigins" | "rateLimit">): RouteConfiguration {
  const corsPolicy: MessageInitShape<typeof CorsPolicySchema> = {
    allowOriginStringMatch: corsOrigins(options.corsOrigins),
    allowMethods: "GET, PUT, POST, PATCH, DELETE, OPTIONS",
    allowHeaders:
      "authorization, content-type, idempotency-key, if-match, if-none-match, x-grpc-web, x-user-agent, grpc-timeout, connect-protocol-version, connect-timeout-ms",
    exposeHeaders:
      "cache-status, etag, location, idempotent-replayed, idempotency-key-expires, retry-after, ratelimit, ratelimit-policy, allow, x-request-id, grpc-status, grpc-message, grpc-status-details-bin",
    maxAge: "600",
  };
  return create(RouteConfigurationSchema, {
    name,
    virtualHosts: [
      {
        name: "umw",
        domains: ["*"],
        typedPerFilterConfig: { "envoy.filters.http.cors": pack(CorsPolicySchema, corsPolicy) },
        rateLimits: rateLimitActions(options.rateLimit),
        routes: [
          ...commandReadRoutes(seconds(10)),
          ...(["query", "command"] as const).map((service) => ({
            match: { pathSpecifier: { case: "prefix" as const, value: `/umw.v1.${service === "query" ? "QueryService" : "CommandService"}/` } },
            action: {
              case: "route" as const,
              value: {
                clusterSpecifier: { case: "cluster" as const, value: service },
                timeout: seconds(10),
                retryPolicy: routeRetryPolicy(service),
              },
            },
          })),
          {
            match: { pathSpecifier: { case: "prefix", value: "/umw.v1.RealtimeService/" } },
            // Server-streaming: no route timeout; idle streams are kept alive by heartbeats.
            action: {
              case: "route",
              value: { clusterSpecifier: { case: "cluster", value: "realtime" }, timeout: seconds(0), retryPolicy: routeRetryPolicy("realtime") },
            },
          },
          ...restFallbackRoutes(),
        ],
      },
    ],
  });
}

const JSON_HEADERS = [{ header: { key: "content-type", value: "application/json" } }, { header: { key: "cache-control", value: "no-store" } }];

/**
 * What reaches the router untranscoded: `/healthz`; on a REST path, a method no binding accepts
 * (405 + Allow, or 204 + Allow for a plain OPTIONS); anything else 404. Bodies are google.rpc.Status
 * JSON with the Node edge's ErrorInfo reasons. (`/readyz` is answered by the health_check filter.)
 */
function restFallbackRoutes(): MessageInitShape<typeof RouteSchema>[] {
  const direct = (status: number, body: string | undefined) => ({
    case: "directResponse" as const,
    value: { status, ...(body !== undefined && { body: { specifier: { case: "inlineString" as const, value: body } } }) },
  });
  const headersOf = (extra: { key: string; value: string }[]) => [...JSON_HEADERS, ...extra.map((header) => ({ header }))];
  const routes: MessageInitShape<typeof RouteSchema>[] = [
    { match: { pathSpecifier: { case: "path" as const, value: "/healthz" } }, action: direct(200, '{"status":"SERVING"}'), responseHeadersToAdd: headersOf([]) },
  ];
  for (const path of REST.paths) {
    const allow = path.allow.join(", ");
    const pathMatch = { case: "safeRegex" as const, value: { regex: path.regex } };
    // Envoy's CORS filter acts only on routes to a cluster, never on direct responses: preflights and
    // the allowed methods (which the transcoder takes before the router) match one.
    const forCors = { case: "route" as const, value: { clusterSpecifier: { case: "cluster" as const, value: "query" } } };
    routes.push(
      {
        match: { pathSpecifier: pathMatch, headers: [{ name: "access-control-request-method" }] },
        action: forCors,
      },
      {
        match: { pathSpecifier: pathMatch, headers: [{ name: ":method", headerMatchSpecifier: { case: "exactMatch" as const, value: "OPTIONS" } }] },
        action: direct(204, undefined),
        responseHeadersToAdd: [{ header: { key: "allow", value: allow } }],
      },
      {
        match: {
          pathSpecifier: pathMatch,
          headers: [{ name: ":method", headerMatchSpecifier: { case: "safeRegexMatch" as const, value: { regex: `^(${path.allow.join("|")})$` } }, invertMatch: true }],
        },
        action: direct(405, statusJson(12, "METHOD_NOT_ALLOWED", `the method is not allowed on this path; allowed: ${allow}`, { allow })),
        responseHeadersToAdd: headersOf([{ key: "allow", value: allow }]),
      },
      { match: { pathSpecifier: pathMatch }, action: forCors },
    );
  }
  routes.push({ match: { pathSpecifier: { case: "prefix" as const, value: "/" } }, action: direct(404, statusJson(5, "ROUTE_NOT_FOUND", "no route for this method and path")), responseHeadersToAdd: headersOf([]) });
  return routes;
}

/** The CORS policy allows any origin with `*`, else exactly the listed ones (none when the list is empty). */
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
                alwaysSetRequestIdInResponse: true,
                ...edgeTracing(options.tracing),
                // Envoy is the edge: the client is the connection's peer, not what X-Forwarded-For claims (rate limits key by it).
                useRemoteAddress: true,
                streamIdleTimeout: seconds(300),
                localReplyConfig: localReplyConfig(),
                routeSpecifier: routeConfig
                  ? { case: "routeConfig", value: routeConfig }
                  : { case: "rds", value: { routeConfigName: (routes as { rds: string }).rds, configSource: ADS } },
                httpFilters: [
                  // Decoding runs top down, encoding bottom up: Lua sees transcoded responses, the compressors Lua's.
                  stripClientPrincipalFilter(options.auth?.realm),
                  { name: "envoy.filters.http.cors", configType: { case: "typedConfig", value: pack(CorsSchema, {}) } },
                  {
                    name: "envoy.filters.http.health_check",
                    configType: {
                      case: "typedConfig",
                      value: pack(HealthCheckSchema, {
                        passThroughMode: false,
                        headers: [{ name: ":path", headerMatchSpecifier: { case: "exactMatch", value: "/readyz" } }],
                        // Ready while every routed service has a healthy instance.
                        clusterMinHealthyPercentages: Object.fromEntries(ROUTED_SERVICES.map((service) => [service, { value: 1 }])),
                      }),
                    },
                  },
                  ...(options.auth ? jwtAuthnFilters(options.auth) : []),
                  compressor("gzip", pack(GzipSchema, {})),
                  compressor("br", pack(BrotliSchema, {})),
                  {
                    name: "envoy.filters.http.lua",
                    configType: { case: "typedConfig", value: pack(LuaSchema, { defaultSourceCode: { specifier: { case: "inlineString", value: restResponseLua(REST.versioned) } } }) },
                  },
                  { name: "envoy.filters.http.grpc_web", configType: { case: "typedConfig", value: pack(GrpcWebSchema, {}) } },
                  ...rateLimitFilters(options.rateLimit),
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
                        // Like the Node edge: unknown query parameters are ignored; untranscoded paths go on to the 404/405 routes.
                        ignoreUnknownQueryParameters: true,
                        caseInsensitiveEnumParsing: true,
                        printOptions: { alwaysPrintPrimitiveFields: false, preserveProtoFieldNames: false, streamNewlineDelimited: true },
                      }),
                    },
                  },
                  // Connect unary (after the transcoder, so REST JSON is never taken for Connect).
                  { name: "envoy.filters.http.connect_grpc_bridge", configType: { case: "typedConfig", value: pack(ConnectGrpcBridgeSchema, {}) } },
                  extAuthzFilter(),
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

/** One response compressor (Envoy picks among them by the Accept-Encoding q-values). */
function compressor(encoding: "gzip" | "br", library: Any) {
  return {
    name: "envoy.filters.http.compressor",
    configType: {
      case: "typedConfig" as const,
      value: pack(CompressorSchema, {
        compressorLibrary: { name: encoding, typedConfig: library },
        responseDirectionConfig: { commonConfig: { minContentLength: COMPRESSION_MIN_BYTES, contentType: ["application/json"] } },
      }),
    },
  };
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
    circuitBreakers: clusterCircuitBreakers(service),
    outlierDetection: clusterOutlierDetection(),
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

/**
 * The TLS files of Envoy's mesh client certificate and of the mesh CA, as the secrets the clusters
 * name. Envoy is both a client (of the mesh) and a server (of the public TLS listener), so its
 * client pair is `<identity>.client.crt/.key` (runtime/certs.ts).
 */
export function meshSecrets(certsDir: string, identity: string): Secret[] {
  const client = certificateFiles(identity, "both", "client");
  return [
    create(SecretSchema, {
      name: SECRET.identity,
      type: {
        case: "tlsCertificate",
        value: {
          certificateChain: { specifier: { case: "filename", value: `${certsDir}/${client.cert}` } },
          privateKey: { specifier: { case: "filename", value: `${certsDir}/${client.key}` } },
        },
      },
    }),
    create(SecretSchema, { name: SECRET.ca, type: { case: "validationContext", value: { trustedCa: { specifier: { case: "filename", value: `${certsDir}/ca.crt` } } } } }),
  ];
}
