import { create, createRegistry, toJson, type JsonValue } from "@bufbuild/protobuf";
import { stringify } from "yaml";
import { BootstrapSchema, type Bootstrap } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { ClusterSchema, Cluster_DiscoveryType, type Cluster } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ApiConfigSource_ApiType, ApiVersion } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { CorsPolicySchema, CorsSchema } from "../../gen/envoy/extensions/filters/http/cors/v3/cors_pb.js";
import { GrpcJsonTranscoderSchema } from "../../gen/envoy/extensions/filters/http/grpc_json_transcoder/v3/transcoder_pb.js";
import { GrpcWebSchema } from "../../gen/envoy/extensions/filters/http/grpc_web/v3/grpc_web_pb.js";
import { RouterSchema } from "../../gen/envoy/extensions/filters/http/router/v3/router_pb.js";
import { HttpConnectionManagerSchema } from "../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { UpstreamTlsContextSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { HttpProtocolOptionsSchema } from "../../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";
import { issuerClusters } from "./jwt-authn.js";
import {
  ADS,
  EDGE_FILTER_SCHEMAS,
  edgeListener,
  edgeRoutes,
  loadAssignment,
  meshCluster,
  meshSecrets,
  ROUTED_SERVICES,
  upstreamTls,
  type EdgeOptions,
  type Endpoint,
  type RoutedService,
} from "./edge-resources.js";
import { tracingClusters } from "./edge-tracing.js";
import { OpenTelemetryConfigSchema } from "../../gen/envoy/config/trace/v3/opentelemetry_pb.js";
import { rateLimitClusters } from "./rate-limit-filter.js";

/** The mesh identity Envoy presents (to the services and to the control plane): `envoy.client.crt` (`envoy.crt` is its TLS listener's dev certificate). */
export const ENVOY_IDENTITY = "envoy";
export const CONTROL_PLANE_CLUSTER = "control-plane";

export interface AdminOptions {
  readonly certsDir: string;
  /** Envoy's admin interface listens here, on 127.0.0.1. */
  readonly adminPort: number;
}

/** Everything in one file, for users without the control plane (`umw envoy-config`). */
export function staticBootstrap(options: EdgeOptions & AdminOptions & { readonly upstreams: Readonly<Record<RoutedService, Endpoint>> }): Bootstrap {
  return create(BootstrapSchema, {
    staticResources: {
      listeners: [edgeListener(options, { inline: edgeRoutes("umw", options) })],
      clusters: [...ROUTED_SERVICES.map((service) => meshCluster(service, { dns: options.upstreams[service] })), ...tracingClusters(options.tracing), ...rateLimitClusters(options.rateLimit, upstreamTls), ...issuerClusters(options.auth)],
      secrets: meshSecrets(options.certsDir, ENVOY_IDENTITY),
    },
    admin: admin(options.adminPort),
  });
}

/** A bootstrap with only the control plane (over mTLS) in it: listeners, routes, clusters and endpoints come by ADS. */
export function adsBootstrap(options: AdminOptions & { readonly controlPlane: Endpoint; readonly nodeId: string }): Bootstrap {
  return create(BootstrapSchema, {
    node: { id: options.nodeId, cluster: "umw-edge" },
    dynamicResources: {
      adsConfig: {
        apiType: ApiConfigSource_ApiType.GRPC,
        transportApiVersion: ApiVersion.V3,
        grpcServices: [{ targetSpecifier: { case: "envoyGrpc", value: { clusterName: CONTROL_PLANE_CLUSTER } } }],
        setNodeOnFirstMessageOnly: true,
      },
      cdsConfig: ADS,
      ldsConfig: ADS,
    },
    staticResources: { clusters: [controlPlaneCluster(options.controlPlane)], secrets: meshSecrets(options.certsDir, ENVOY_IDENTITY) },
    admin: admin(options.adminPort),
  });
}

function controlPlaneCluster(endpoint: Endpoint): Cluster {
  const cluster = meshCluster("query", { dns: endpoint });
  return create(ClusterSchema, {
    name: CONTROL_PLANE_CLUSTER,
    connectTimeout: cluster.connectTimeout,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STRICT_DNS },
    loadAssignment: loadAssignment(CONTROL_PLANE_CLUSTER, [endpoint]),
    typedExtensionProtocolOptions: cluster.typedExtensionProtocolOptions,
    transportSocket: upstreamTls(CONTROL_PLANE_CLUSTER),
  });
}

function admin(port: number) {
  return { address: { address: { case: "socketAddress" as const, value: { address: "127.0.0.1", portSpecifier: { case: "portValue" as const, value: port } } } } };
}

/** Every message a typed_config may hold, for JSON (the `@type` of google.protobuf.Any). */
export const TYPED_CONFIGS = createRegistry(
  HttpConnectionManagerSchema,
  CorsSchema,
  CorsPolicySchema,
  GrpcWebSchema,
  GrpcJsonTranscoderSchema,
  RouterSchema,
  UpstreamTlsContextSchema,
  HttpProtocolOptionsSchema,
  ...EDGE_FILTER_SCHEMAS,
  OpenTelemetryConfigSchema,
);

/** Envoy's JSON form (proto field names), as Envoy reads it from YAML. */
export function bootstrapJson(bootstrap: Bootstrap): JsonValue {
  return typeFirst(toJson(BootstrapSchema, bootstrap, { registry: TYPED_CONFIGS, useProtoFieldName: true }));
}

/** Puts each Any's "@type" first, where a reader looks for it. */
function typeFirst(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(typeFirst);
  if (value === null || typeof value !== "object") return value;
  const { "@type": type, ...rest } = value;
  return { ...(type === undefined ? {} : { "@type": type }), ...Object.fromEntries(Object.entries(rest).map(([key, field]) => [key, typeFirst(field)])) };
}

export function bootstrapYaml(bootstrap: Bootstrap, header: string): string {
  const comment = header
    .trim()
    .split("\n")
    .map((line) => `# ${line}`.trimEnd())
    .join("\n");
  return `${comment}\n${stringify(bootstrapJson(bootstrap), { lineWidth: 0 })}`;
}
