import type { ServerCredentials } from "@grpc/grpc-js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import type { Logger } from "../../runtime/logger.js";
import { defaultRegistry, serveMetrics, type MetricsServer, type Registry } from "../../runtime/metrics.js";
import { tenantLabeler } from "../../runtime/metric-labels.js";
import { prometheusCallMetrics } from "../../runtime/interceptor-metrics.js";
import type { ServerInterceptor } from "../../runtime/interceptor.js";
import type { MeshAuthorization } from "../../runtime/mesh-authorization.js";
import type { InProcessTransport } from "../../runtime/in-process-transport.js";
import { MeshServer } from "../../runtime/server.js";
import { startMeshServer, type ServiceModule } from "../../runtime/service.js";
import type { Cache } from "../../runtime/cache/cache.js";
import { catalogFromConfig, type ResourceCatalog } from "./catalog.js";
import { queryHandlers } from "./handlers.js";
import { QueryMetrics } from "./metrics.js";
import { EntityReader, type EntityReaderOptions } from "./reader.js";
import { followDomainEvents } from "./l1-events.js";
import { topicNames, topicSpecs } from "../../runtime/topics.js";
import type { Subscription } from "../../runtime/bus.js";

export { EntityReader } from "./reader.js";
export type { ReadResult, ReadRequest } from "./reader.js";
export { RedisCache } from "../../runtime/cache/redis-cache.js";
export { MemoryCache } from "../../runtime/cache/memory-cache.js";
export { ResourceCatalog, cachePolicy, catalogFromConfig } from "./catalog.js";
export { PostgresBackend } from "./postgres-backend.js";
export { HttpBackend } from "./http-backend.js";
export type { EntityBackend } from "./backend.js";
export type { Cache } from "../../runtime/cache/cache.js";
export { CACHE_STATUS_HEADER, formatCacheStatus, type CacheStatus } from "./cache-status.js";
export { QueryMetrics } from "./metrics.js";

/** Explicit dependencies of one QueryService instance (tests, benchmarks, embedded runs). */
export interface QueryServerOptions {
  readonly catalog: ResourceCatalog;
  readonly cache: Cache;
  readonly credentials: ServerCredentials;
  readonly log: Logger;
  /** Prefix of every Redis name (test isolation). */
  readonly keyPrefix?: string;
  readonly host?: string;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  /** Metrics registry (default: the process registry). Give each instance its own to count it alone. */
  readonly registry?: Registry;
  /** Serve /metrics on this port (0 = any free one); undefined = no metrics server. */
  readonly metricsPort?: number;
  readonly drainTimeoutMs?: number;
  /** Read-path tuning (read-your-writes retries, lease rounds, L1 size, randomness). */
  readonly reader?: Partial<Omit<EntityReaderOptions, "cache" | "catalog" | "metrics" | "log" | "keyPrefix">>;
  /** Interceptors of the MeshServer (as `umw serve` gives it `policyInterceptors`); default none. */
  readonly interceptors?: readonly ServerInterceptor[];
  /** The mesh authorization table (as `umw serve` gives it `meshAuthorization(config)`); default none. */
  readonly authorization?: MeshAuthorization;
  /** Closed by stop(), after the server (e.g. the cache and the pg pool the caller made for this instance). */
  readonly owns?: readonly { close(): Promise<void> }[];
  /** Offer the server to callers in this process (runtime/in-process-transport.ts) while it runs. */
  readonly inProcess?: InProcessTransport;
}

export interface QueryServer {
  /** host:port of the gRPC server. */
  readonly address: string;
  readonly port: number;
  /** http://host:port/metrics when a metrics server runs. */
  readonly metricsUrl: string | undefined;
  readonly reader: EntityReader;
  readonly metrics: QueryMetrics;
  stop(): Promise<void>;
}

/** Builds one QueryService instance from explicit dependencies and starts it (mTLS gRPC, optional /metrics). */
export async function startQueryServer(options: QueryServerOptions): Promise<QueryServer> {
  const host = options.host ?? "127.0.0.1";
  const metrics = new QueryMetrics(options.registry ?? defaultRegistry);
  const reader = new EntityReader({ ...options.reader, cache: options.cache, catalog: options.catalog, metrics, log: options.log, keyPrefix: options.keyPrefix });
  const server = new MeshServer({
    name: "query",
    host,
    port: options.port ?? 0,
    credentials: options.credentials,
    log: options.log,
    drainTimeoutMs: options.drainTimeoutMs,
    metrics: prometheusCallMetrics("server", metrics.registry),
    interceptors: options.interceptors,
    authorization: options.authorization,
  });
  server.addService(QueryService, queryHandlers(reader));
  let metricsServer: MetricsServer | undefined;
  const offered = options.inProcess && { close: async () => options.inProcess!.unregister(server.inProcess()) };
  try {
    const port = await server.start();
    if (options.metricsPort !== undefined) metricsServer = await serveMetrics(host, options.metricsPort, metrics.registry);
    options.inProcess?.register(server.inProcess());
    return {
      address: server.address,
      port,
      metricsUrl: metricsServer?.url,
      reader,
      metrics,
      stop: () => stopAll(options.log, [offered, server, metricsServer && { close: () => metricsServer!.close() }, reader, ...(options.owns ?? [])]),
    };
  } catch (error) {
    await stopAll(options.log, [offered, server, metricsServer && { close: () => metricsServer!.close() }, reader, ...(options.owns ?? [])]);
    throw error;
  }
}

/** `umw serve query`: the cache and the read replica of the infrastructure, types from config.resources. */
export const queryService: ServiceModule = {
  name: "query",
  description: "Cache-first reads (QueryService)",
  async start(runtime) {
    const { config, log, infrastructure } = runtime;
    const catalog = catalogFromConfig(config.resources, () => infrastructure.replica("query"));
    if (catalog.types.length === 0) log.warn("no resource types configured (config.resources): every read answers UNKNOWN_RESOURCE_TYPE");
    const cache = await infrastructure.cache();
    // Metrics go to the process registry, served by the process's metrics listener (cli serve).
    const metrics = new QueryMetrics(defaultRegistry, tenantLabeler(config.metricsTenantLabels));
    metrics.declare(catalog.types, config.metricsTenantLabels);
    const reader = new EntityReader({ cache, catalog, metrics, log, keyPrefix: config.cacheKeyPrefix, l1MaxEntries: config.queryL1MaxEntries });
    let server: MeshServer | undefined;
    let events: Subscription | undefined;
    try {
      // An L1 (a type's cache.l1Ms) follows the domain events, so a change replaces the local copy when its event arrives.
      if (catalog.types.some((type) => (catalog.find(type)?.policy.l1Ms ?? 0) > 0)) {
        const bus = await infrastructure.bus();
        const topics = topicNames(config);
        await bus.ensureTopics(topicSpecs(topics, config.topicPartitions));
        events = await followDomainEvents({ bus, topic: topics.entityEvents, reader, log, groupPrefix: config.topicPrefix });
      }
      server = await startMeshServer(runtime, { name: "query", port: config.queryPort, service: QueryService, handlers: queryHandlers(reader, new Set(config.trustedPrincipalPeers)) });
      log.info({ types: catalog.types }, "query service ready");
    } catch (error) {
      await stopAll(log, [server, events, reader]);
      throw error;
    }
    return { name: "query", stop: () => stopAll(log, [server, events, reader]) };
  },
};

type Stoppable = { stop(): Promise<void> } | { close(): Promise<void> } | undefined;

/** Stops in order; a failure is logged and does not keep the rest open. */
async function stopAll(log: Logger, parts: readonly Stoppable[]): Promise<void> {
  for (const part of parts) {
    if (!part) continue;
    try {
      await ("stop" in part ? part.stop() : part.close());
    } catch (error) {
      log.warn({ err: (error as Error).message }, "query: error while stopping");
    }
  }
}
