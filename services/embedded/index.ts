import type { PGlite } from "@electric-sql/pglite";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { createDevCertificates } from "../../runtime/certs.js";
import type { Config } from "../../runtime/config.js";
import type { Logger } from "../../runtime/logger.js";
import { MemoryBus } from "../../runtime/memory-bus.js";
import { startMeshServer, type RunningService, type ServiceModule, type ServiceRuntime } from "../../runtime/service.js";
import type { Database } from "../../runtime/sql.js";
import { serverCredentials } from "../../runtime/tls.js";
import { topicNames } from "../../runtime/topics.js";
import { MemoryCache } from "../../runtime/cache/memory-cache.js";
import { configuredPolicies, versionedWriter } from "../../runtime/cache/versioned-writer.js";
import { createCacheUpdater } from "../cache-updater/updater.js";
import { createCommandService } from "../command/command-service.js";
import { edgeService } from "../edge/index.js";
import { createProcessor } from "../processor/processor.js";
import { catalogFromConfig } from "../query/catalog.js";
import { startQueryServer } from "../query/index.js";
import { startRealtimeHub } from "../realtime/index.js";
import { realtimeLimits } from "../realtime/limits.js";
import { postgresSnapshotSource } from "../realtime/snapshot-source.js";
import { umwTopics } from "../relay/index.js";
import { createOutboxRelay } from "../relay/relay.js";
import { MESH_IDENTITIES, SERVICES } from "../registry.js";
import { pgliteCommandFeed } from "./pglite-command-feed.js";
import { pgliteReplicaPool } from "./pglite-replica.js";
import { pgliteSessionOpener } from "./pglite-session.js";
import { openEmbeddedDatabase } from "./pglite-template.js";

export { pgliteSessionOpener } from "./pglite-session.js";
export { pgliteCommandFeed } from "./pglite-command-feed.js";
export { pgliteReplicaPool } from "./pglite-replica.js";
export { openEmbeddedDatabase } from "./pglite-template.js";

/** The embedded stand-ins for the infrastructure: one of each per process, shared by every service in it. */
export interface EmbeddedStores {
  /** Postgres primary and read replica both (PGlite: one connection, transactions queue). */
  readonly db: Database & { readonly pglite: PGlite };
  /** Kafka. */
  readonly bus: MemoryBus;
  /** Redis. */
  readonly cache: MemoryCache;
  /** PGlite's folder; undefined = in memory. */
  readonly dataDir: string | undefined;
}

export interface Embedded extends EmbeddedStores {
  /** A module per name of services/registry.ts SERVICES, each on the embedded stores. */
  readonly services: Readonly<Record<string, ServiceModule>>;
  /** Closes the stores; stop the services first. */
  close(): Promise<void>;
}

/**
 * `umw serve ... --embedded` (or UMW_EMBEDDED=1): every service as in production (same gRPC
 * servers over mTLS on the configured ports, same edge), on PGlite, the in-process bus and the
 * in-memory cache instead of Postgres, Kafka and Redis. Creates the dev certificates that are
 * missing, so a first run needs no `umw certs`.
 */
export async function openEmbedded(config: Config, log: Logger): Promise<Embedded> {
  const created = createDevCertificates({ dir: config.certsDir, identities: MESH_IDENTITIES });
  if (created.length) log.info({ dir: config.certsDir, created }, "embedded: created dev certificates");

  const dataDir = config.embeddedDataDir;
  const db = await openEmbeddedDatabase({ dataDir, log });
  const bus = new MemoryBus();
  const cache = new MemoryCache();
  const stores: EmbeddedStores = { db, bus, cache, dataDir };
  const services = embeddedServices(stores);
  try {
    const missing = Object.keys(SERVICES).filter((name) => !(name in services));
    if (missing.length) throw new Error(`embedded mode has no module for ${missing.join(", ")}`);
    await bus.ensureTopics(umwTopics(config, config.topicPartitions));
    if (dataDir) await requeueAcceptedCommands(db, topicNames(config).commands, log);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  log.warn(
    { postgres: dataDir ? `PGlite in ${dataDir}` : "PGlite in memory", kafka: "in-process bus (memory)", redis: "in-process cache (memory)" },
    dataDir
      ? `embedded mode: no Redis, Postgres or Kafka; the database is kept in ${dataDir}, the bus and the cache are in memory (lost at exit)`
      : "embedded mode: no Redis, Postgres or Kafka; all data is in memory and not durable (lost at exit; UMW_EMBEDDED_DATA_DIR keeps the database)",
  );

  return {
    ...stores,
    services,
    async close() {
      await bus.close();
      await cache.close();
      await db.close();
    },
  };
}

/** The service modules of the embedded mode, by the names `umw serve` takes. */
export function embeddedServices({ db, bus, cache }: EmbeddedStores): Record<string, ServiceModule> {
  const module = (name: string, description: string, start: (runtime: ServiceRuntime) => Promise<RunningService>): ServiceModule => ({ name, description, start });
  return {
    query: module("query", "Cache-first reads (QueryService) on the in-memory cache and PGlite", async (runtime) => {
      const { config, log } = runtime;
      const replica = pgliteReplicaPool(db);
      const catalog = catalogFromConfig(config.resources, () => replica);
      if (catalog.types.length === 0) log.warn("no resource types configured (config.resources): every read answers UNKNOWN_RESOURCE_TYPE");
      const server = await startQueryServer({
        catalog,
        cache,
        credentials: serverCredentials(runtime.identity("query")),
        log,
        keyPrefix: config.cacheKeyPrefix,
        host: config.host,
        port: config.queryPort,
        metricsPort: config.metricsPort,
        drainTimeoutMs: config.drainTimeoutMs,
      });
      log.info({ metrics: server.metricsUrl, types: catalog.types }, "query service ready");
      return { name: "query", stop: () => server.stop() };
    }),

    command: module("command", "Writes as commands (CommandService) on PGlite", async (runtime) => {
      const { config, log } = runtime;
      const impl = createCommandService({
        db,
        resources: config.resources,
        topics: topicNames(config),
        log,
        listen: pgliteSessionOpener(db.pglite),
        idempotencyTtlMs: config.idempotencyTtlMs,
        idempotencySweepMs: config.idempotencySweepMs,
        watchPollMs: config.commandWatchPollMs,
        trustedPrincipalPeers: config.trustedPrincipalPeers,
        payloadLimits: { maxDepth: config.payloadMaxDepth, maxBytes: config.payloadMaxBytes },
      });
      impl.start();
      try {
        const server = await startMeshServer(runtime, { name: "command", port: config.commandPort, service: CommandService, handlers: impl.handlers });
        return {
          name: "command",
          async stop() {
            await server.stop();
            await impl.close();
          },
        };
      } catch (error) {
        await impl.close();
        throw error;
      }
    }),

    realtime: module("realtime", "Live change streams (RealtimeService) on the in-process bus", async (runtime) => {
      const { config, log } = runtime;
      const running = await startRealtimeHub({
        bus,
        topic: topicNames(config).entityEvents,
        snapshots: postgresSnapshotSource(db),
        commands: pgliteCommandFeed({ pglite: db.pglite, sql: db, log }),
        limits: realtimeLimits(config),
        credentials: serverCredentials(runtime.identity("realtime")),
        log,
        host: config.host,
        port: config.realtimePort,
        groupPrefix: config.topicPrefix,
        trustedPeers: config.trustedPrincipalPeers,
        resourceTypes: Object.keys(config.resources),
        drainTimeoutMs: config.drainTimeoutMs,
      });
      return { name: "realtime", stop: () => running.stop() };
    }),

    relay: module("relay", "Outbox relay from PGlite to the in-process bus", async (runtime) => {
      const { config, log } = runtime;
      const relay = createOutboxRelay({
        db: pgliteSessionOpener(db.pglite),
        bus,
        topics: umwTopics(config, config.topicPartitions),
        log,
        postgresLabel: "PGlite (embedded)",
        kafkaLabel: "the in-process bus",
        batchSize: config.relayBatchSize,
        pollMs: config.relayPollMs,
        lockRetryMs: config.relayLockRetryMs,
        retentionMs: config.outboxRetentionMs,
      });
      relay.start();
      try {
        const server = await startMeshServer(runtime, { name: "relay", port: config.relayPort });
        return {
          name: "relay",
          async stop() {
            await server.stop();
            await relay.stop();
          },
        };
      } catch (error) {
        await relay.stop();
        throw error;
      }
    }),

    processor: module("processor", "Applies commands to PGlite", async (runtime) => {
      const { config, log } = runtime;
      const processor = createProcessor({
        db,
        bus,
        topics: topicNames(config),
        log,
        resources: config.resources,
        payloadMaxBytes: config.payloadMaxBytes,
        group: `${config.topicPrefix}umw-processor`,
        maxAttempts: config.processorMaxAttempts,
      });
      await processor.start();
      try {
        const server = await startMeshServer(runtime, { name: "processor", port: config.processorPort });
        return {
          name: "processor",
          async stop() {
            await server.stop();
            await processor.stop();
          },
        };
      } catch (error) {
        await processor.stop();
        throw error;
      }
    }),

    "cache-updater": module("cache-updater", "Keeps the in-memory cache in step with domain events", async (runtime) => {
      const { config, log } = runtime;
      const updater = createCacheUpdater({
        bus,
        writer: versionedWriter(cache, { keyPrefix: config.cacheKeyPrefix, policyOf: configuredPolicies(config.resources) }),
        topic: topicNames(config).entityEvents,
        log,
        group: `${config.topicPrefix}umw-cache-updater`,
      });
      await updater.start();
      try {
        const server = await startMeshServer(runtime, { name: "cache-updater", port: config.cacheUpdaterPort });
        return {
          name: "cache-updater",
          async stop() {
            await server.stop();
            await updater.stop();
          },
        };
      } catch (error) {
        await updater.stop();
        throw error;
      }
    }),

    // The edge has no store of its own: it reaches the services above over mTLS, as always.
    edge: edgeService,
  };
}

/**
 * With a data dir, the database outlives the process but the in-process bus does not: a command
 * the relay had handed to the old bus and no processor had applied yet would stay ACCEPTED for
 * ever. Mark its outbox row unpublished so the relay sends it again (the processor's inbox dedups
 * anything that had in fact been applied). Rows already pruned (UMW_OUTBOX_RETENTION_MS) are gone.
 */
async function requeueAcceptedCommands(db: Database, commandsTopic: string, log: Logger): Promise<void> {
  const { rows } = await db.query<{ id: string }>(
    `UPDATE umw_outbox SET published_at = NULL
      WHERE published_at IS NOT NULL AND topic = $1
        AND id IN (SELECT id FROM umw_commands WHERE state = 'accepted')
      RETURNING id::text AS id`,
    [commandsTopic],
  );
  if (rows.length) log.info({ count: rows.length }, "embedded: re-sending commands accepted before the last stop and not yet applied");
}
