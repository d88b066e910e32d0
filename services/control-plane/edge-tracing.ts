import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, DurationSchema } from "@bufbuild/protobuf/wkt";
import { ClusterSchema, Cluster_DiscoveryType, type Cluster } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { OpenTelemetryConfigSchema } from "../../gen/envoy/config/trace/v3/opentelemetry_pb.js";
import { HttpConnectionManager_TracingSchema } from "../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import type { Config } from "../../runtime/config.js";
import { HttpProtocolOptionsSchema } from "../../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";

/** Envoy's tracing as the settings ask for it: UMW_OTLP_ENDPOINT (empty: off), UMW_TRACE_SAMPLE_RATIO. */
export function envoyTracing(config: Pick<Config, "otlpEndpoint" | "traceSampleRatio">, serviceName = "umw-envoy"): EdgeTracing | undefined {
  if (!config.otlpEndpoint) return undefined;
  const url = new URL(config.otlpEndpoint);
  return { collector: { host: url.hostname, port: Number(url.port || (url.protocol === "https:" ? 443 : 80)) }, sampleRatio: config.traceSampleRatio, serviceName };
}

/** The cluster of the OpenTelemetry collector that Envoy exports its spans to. */
export const OTLP_CLUSTER = "otlp-collector";

export interface EdgeTracing {
  /** The collector's OTLP gRPC endpoint (plain HTTP/2), e.g. Jaeger's 127.0.0.1:14317. */
  readonly collector: { readonly host: string; readonly port: number };
  /** Share of requests without a sampled `traceparent` that start a trace (0 to 1), as UMW_TRACE_SAMPLE_RATIO. */
  readonly sampleRatio: number;
  /** service.name of Envoy's spans. */
  readonly serviceName: string;
}

/**
 * The edge listener's tracing (HttpConnectionManager.tracing): Envoy's OpenTelemetry tracer, which
 * continues a W3C `traceparent` it receives (or starts a trace, sampled at `sampleRatio`), sends
 * `traceparent` upstream so the services' spans are children of Envoy's, and exports over OTLP gRPC
 * to OTLP_CLUSTER. `{}` when tracing is off, for spreading into the connection manager's config.
 */
export function edgeTracing(tracing: EdgeTracing | undefined): { tracing?: MessageInitShape<typeof HttpConnectionManager_TracingSchema> } {
  if (!tracing) return {};
  const provider = anyPack(
    OpenTelemetryConfigSchema,
    create(OpenTelemetryConfigSchema, {
      grpcService: { targetSpecifier: { case: "envoyGrpc", value: { clusterName: OTLP_CLUSTER } }, timeout: create(DurationSchema, { seconds: 1n }) },
      serviceName: tracing.serviceName,
    }),
  );
  return {
    tracing: {
      randomSampling: { value: tracing.sampleRatio * 100 },
      spawnUpstreamSpan: true,
      provider: { name: "envoy.tracers.opentelemetry", configType: { case: "typedConfig", value: provider } },
    },
  };
}

/** The collector's cluster (HTTP/2 without TLS, found by DNS); none when tracing is off. */
export function tracingClusters(tracing: EdgeTracing | undefined): Cluster[] {
  if (!tracing) return [];
  return [
    create(ClusterSchema, {
      name: OTLP_CLUSTER,
      connectTimeout: create(DurationSchema, { seconds: 2n }),
      clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STRICT_DNS },
      loadAssignment: {
        clusterName: OTLP_CLUSTER,
        endpoints: [
          {
            lbEndpoints: [
              {
                hostIdentifier: {
                  case: "endpoint",
                  value: { address: { address: { case: "socketAddress", value: { address: tracing.collector.host, portSpecifier: { case: "portValue", value: tracing.collector.port } } } } },
                },
              },
            ],
          },
        ],
      },
      typedExtensionProtocolOptions: {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": anyPack(
          HttpProtocolOptionsSchema,
          create(HttpProtocolOptionsSchema, { upstreamProtocolOptions: { case: "explicitHttpConfig", value: { protocolConfig: { case: "http2ProtocolOptions", value: {} } } } }),
        ),
      },
    }),
  ];
}
