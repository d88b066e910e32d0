import { readFileSync } from "node:fs";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Server, status, type ServerCredentials, type ServiceDefinition } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { DiscoveryRequestSchema, DiscoveryResponseSchema, type DiscoveryRequest, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { ClusterSchema } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ClusterLoadAssignmentSchema } from "../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { ListenerSchema, type Listener } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema } from "../../gen/envoy/config/route/v3/route_pb.js";
import { RegistrationService } from "../../gen/umw/controlplane/v1/registration_pb.js";
import { edgeTls, type Config } from "../../runtime/config.js";
import type { Logger } from "../../runtime/logger.js";
import type { MeshAuthorization } from "../../runtime/mesh-authorization.js";
import { meshAuthorization, type ServiceModule } from "../../runtime/service.js";
import { grpcServiceDefinition } from "../../runtime/service-definition.js";
import { serverCredentials } from "../../runtime/tls.js";
import { AggregatedDiscovery, TYPE } from "./aggregated-discovery.js";
import { envoyTracing, tracingClusters } from "./edge-tracing.js";
import { edgeListener, edgeRoutes, loadAssignment, meshCluster, ROUTED_SERVICES, upstreamTls, type EdgeOptions, type Endpoint, type RoutedService } from "./edge-resources.js";
import { rateLimitClusters, type EnvoyRateLimitOptions } from "./rate-limit-filter.js";
import { authorizedHandlers } from "./authorized-handlers.js";
import { EndpointTable } from "./endpoint-table.js";
import { envoyAuthFromConfig, issuerClusters } from "./jwt-authn.js";
import { registrationHandlers } from "./registration.js";
import { edgeTlsListener, type EdgeTlsListenerOptions } from "./tls-listener.js";

export { adsBootstrap, staticBootstrap, bootstrapYaml, ENVOY_IDENTITY } from "./bootstrap.js";
export { registerInstance } from "./registration-client.js";

/** The descriptor set the transcoder needs (umw services + google.rpc error details), sent inline to Envoy. */
export const DESCRIPTOR_SET_PATH = new URL("../../gen/umw.binpb", import.meta.url);
const ROUTES = "umw";

export interface ControlPlaneOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly credentials: ServerCredentials;
  readonly log: Logger;
  readonly edge: EdgeOptions;
  /** A second edge listener with TLS (ALPN h2, http/1.1), when set. */
  readonly edgeTls?: EdgeTlsListenerOptions;
  /** How long Deregister waits for connected Envoys to apply the change. */
  readonly deregisterTimeoutMs?: number;
  /** Who may call ADS and RegistrationService (runtime/mesh-authorization.ts); unset = any mesh peer. */
  readonly authorization?: MeshAuthorization;
}

export interface ControlPlane {
  readonly port: number;
  readonly address: string;
  endpoints(service: RoutedService): Endpoint[];
  stop(): Promise<void>;
}

/**
 * The xDS control plane: serves Envoy the edge listener, its routes, one cluster per mesh service
 * and the endpoints of the instances that registered (RegistrationService), over ADS and mTLS.
 */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const { log } = options;
  const xds = new AggregatedDiscovery(log);
  const publishEndpoints = () =>
    xds.set(
      TYPE.endpoints,
      ROUTED_SERVICES.map((service) => ({ name: service, schema: ClusterLoadAssignmentSchema, message: loadAssignment(service, table.endpoints(service)) })),
    );
  const table = new EndpointTable(() => publishEndpoints());
  xds.setAll({
    [TYPE.cluster]: [...ROUTED_SERVICES.map((service) => meshCluster(service, { eds: true })), ...tracingClusters(options.edge.tracing), ...rateLimitClusters(options.edge.rateLimit, upstreamTls), ...issuerClusters(options.edge.auth)].map((cluster) => ({ name: cluster.name, schema: ClusterSchema, message: cluster })),
    [TYPE.endpoints]: ROUTED_SERVICES.map((service) => ({ name: service, schema: ClusterLoadAssignmentSchema, message: loadAssignment(service, []) })),
    [TYPE.listener]: edgeListeners(edgeListener(options.edge, { rds: ROUTES }), options.edgeTls).map((listener) => ({ name: listener.name, schema: ListenerSchema, message: listener })),
    [TYPE.routes]: [{ name: ROUTES, schema: RouteConfigurationSchema, message: edgeRoutes(ROUTES, options.edge) }],
  });

  // The server pings its peers, so that a vanished instance's registration (and Envoy's stream) ends.
  const server = new Server({ "grpc.keepalive_time_ms": 10_000, "grpc.keepalive_timeout_ms": 5_000, "grpc.keepalive_permit_without_calls": 1 });
  const ads = adsDefinition();
  server.addService(ads, authorizedHandlers(ads, {
    StreamAggregatedResources: xds.handle,
    DeltaAggregatedResources: (call: { destroy(error: Error): void }) =>
      call.destroy(Object.assign(new Error("delta xDS is not served; use state-of-the-world ADS"), { code: status.UNIMPLEMENTED })),
  } as never, options.authorization));
  const timeoutMs = options.deregisterTimeoutMs ?? 5_000;
  const registration = grpcServiceDefinition(RegistrationService);
  server.addService(
    registration,
    authorizedHandlers(registration, registrationHandlers({ table, log, settled: () => xds.applied(TYPE.endpoints, xds.version(TYPE.endpoints), timeoutMs) }) as never, options.authorization),
  );
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${options.host}:${options.port}`, options.credentials, (error, bound) =>
      error ? reject(new Error(`control plane: cannot listen on ${options.host}:${options.port}: ${error.message}`)) : resolve(bound),
    ),
  );
  log.info({ address: `${options.host}:${port}` }, "xds control plane listening");
  return {
    port,
    address: `${options.host}:${port}`,
    endpoints: (service) => table.endpoints(service),
    async stop() {
      xds.closeAll();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/** Envoy's rate limits, when the rate limit service's address is set (and rate limits are on). */
function envoyRateLimit(config: Config): EnvoyRateLimitOptions | undefined {
  if (!config.rateLimitEnabled || !config.ratelimitAddress) return undefined;
  const colon = config.ratelimitAddress.lastIndexOf(":");
  return {
    service: { host: config.ratelimitAddress.slice(0, colon), port: Number(config.ratelimitAddress.slice(colon + 1)) },
    failureMode: config.rateLimitFailureMode,
    // Envoy's wait covers the service's own wait for Redis, and the hop.
    timeoutMs: config.rateLimitTimeoutMs + 100,
  };
}

function edgeListeners(plain: Listener, tls: EdgeTlsListenerOptions | undefined): Listener[] {
  return tls ? [plain, edgeTlsListener(plain, tls)] : [plain];
}

/** grpc-js definition of the (bidirectional) ADS methods, with protobuf-es serializers. */
function adsDefinition(): ServiceDefinition {
  const definition: Record<string, ServiceDefinition[string]> = {};
  for (const method of AggregatedDiscoveryService.methods) {
    definition[method.name] = {
      path: `/${AggregatedDiscoveryService.typeName}/${method.name}`,
      requestStream: true,
      responseStream: true,
      requestSerialize: (value: DiscoveryRequest) => Buffer.from(toBinary(DiscoveryRequestSchema, value)),
      requestDeserialize: (bytes: Buffer) => (method.name === "StreamAggregatedResources" ? fromBinary(DiscoveryRequestSchema, bytes) : bytes),
      responseSerialize: (value: DiscoveryResponse) => Buffer.from(toBinary(DiscoveryResponseSchema, value)),
      responseDeserialize: (bytes: Buffer) => fromBinary(DiscoveryResponseSchema, bytes),
    };
  }
  return definition;
}

/** `umw control-plane`: config.controlPlanePort; the edge listener on config.edgePort. */
export const controlPlaneService: ServiceModule = {
  name: "control-plane",
  description: "xDS control plane for Envoy (ADS: listeners, routes, clusters, endpoints of registered instances)",
  async start(runtime) {
    const { config, log } = runtime;
    const controlPlane = await startControlPlane({
      host: config.host,
      port: config.controlPlanePort,
      credentials: serverCredentials(runtime.identity("control-plane")),
      authorization: meshAuthorization(config),
      log,
      edge: { listenerPort: config.edgePort, corsOrigins: config.edgeCorsOrigins, descriptor: { bytes: readFileSync(DESCRIPTOR_SET_PATH) }, tracing: envoyTracing(config), rateLimit: envoyRateLimit(config), auth: await envoyAuthFromConfig(config, log) },
      edgeTls: edgeTls(config),
    });
    return { name: "control-plane", stop: () => controlPlane.stop() };
  },
};
