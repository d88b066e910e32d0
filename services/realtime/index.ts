import type { ServerCredentials } from "@grpc/grpc-js";
import { RealtimeService } from "../../gen/umw/v1/realtime_pb.js";
import type { EventBus } from "../../runtime/bus.js";
import type { Logger } from "../../runtime/logger.js";
import { MeshServer } from "../../runtime/server.js";
import { instrumentBus } from "../../runtime/bus-metrics.js";
import { realtimeMetrics } from "./realtime-metrics.js";
import { closeStack, startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { topicNames } from "../../runtime/topics.js";
import { meshSubscriptionPolicy } from "../policy/configured-policy.js";
import { postgresCommandFeed, type CommandFeed } from "./command-feed.js";
import { RealtimeHub, type RealtimeHubStats } from "./hub.js";
import { realtimeLimits, type RealtimeLimits } from "./limits.js";
import type { SubscriptionPolicy } from "./policy.js";
import { postgresSnapshotSource, type EntitySnapshotSource } from "./snapshot-source.js";

export { RealtimeHub, type RealtimeHubOptions, type RealtimeHubStats } from "./hub.js";
export { DEFAULT_LIMITS, realtimeLimits, type RealtimeLimits } from "./limits.js";
export { tenantIsolation, HEADERS, type SubscriptionPolicy, type Caller, type TopicTarget } from "./policy.js";
export { postgresSnapshotSource, type EntitySnapshotSource, type Snapshot, type SnapshotQuery } from "./snapshot-source.js";
export { postgresCommandFeed, type CommandFeed, type CommandUpdate } from "./command-feed.js";
export { decodePosition, encodePosition, type Position } from "./position.js";

/** Partitions the hub asks for when it is the first to need the entity-events topic. */

export interface RealtimeHubServerDeps {
  readonly bus: EventBus;
  /** The entity-events topic. */
  readonly topic: string;
  readonly snapshots: EntitySnapshotSource;
  readonly commands?: CommandFeed;
  readonly policy?: SubscriptionPolicy;
  readonly limits?: Partial<RealtimeLimits>;
  readonly credentials: ServerCredentials;
  readonly log: Logger;
  readonly host?: string;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  readonly name?: string;
  readonly group?: string;
  readonly groupPrefix?: string;
  readonly trustedPeers?: readonly string[];
  readonly resourceTypes?: readonly string[];
  readonly fromBeginning?: boolean;
  readonly drainTimeoutMs?: number;
}

export interface RunningRealtimeHub {
  readonly hub: RealtimeHub;
  readonly server: MeshServer;
  readonly port: number;
  /** host:port to dial. */
  readonly address: string;
  stats(): RealtimeHubStats;
  /** Ends the streams (UNAVAILABLE SHUTTING_DOWN), stops consuming; the deps stay open (the caller owns them). */
  stop(): Promise<void>;
}

/**
 * A hub and its gRPC server from explicit dependencies: what tests and the fan-out bench use.
 * The hub consumes before the server accepts, so no subscriber is attached to a hub that is not live.
 */
export async function startRealtimeHub(deps: RealtimeHubServerDeps): Promise<RunningRealtimeHub> {
  const hub = new RealtimeHub({
    bus: deps.bus,
    topic: deps.topic,
    snapshots: deps.snapshots,
    commands: deps.commands,
    policy: deps.policy,
    limits: deps.limits,
    log: deps.log,
    group: deps.group,
    groupPrefix: deps.groupPrefix,
    trustedPeers: deps.trustedPeers,
    resourceTypes: deps.resourceTypes,
    fromBeginning: deps.fromBeginning,
  });
  await hub.start();
  const host = deps.host ?? "127.0.0.1";
  const server = new MeshServer({
    name: deps.name ?? "realtime",
    host,
    port: deps.port ?? 0,
    credentials: deps.credentials,
    log: deps.log,
    drainTimeoutMs: deps.drainTimeoutMs ?? 2_000,
  });
  server.addService(RealtimeService, hub.handlers);
  let port: number;
  try {
    port = await server.start();
  } catch (error) {
    await hub.stop();
    throw error;
  }
  return {
    hub,
    server,
    port,
    address: `${host}:${port}`,
    stats: () => hub.stats(),
    async stop() {
      await server.stop();
      await hub.stop();
    },
  };
}

/** `umw serve realtime`: entity events from the bus, snapshots and command statuses from the primary. */
export const realtimeService: ServiceModule = {
  name: "realtime",
  description: "Live change streams (RealtimeService)",
  async start(runtime) {
    const { config, log, infrastructure } = runtime;
    const topics = topicNames(config);
    const cleanup = closeStack(log);
    try {
      // The hub's group is unique per instance: counted under one stable label.
      const bus = instrumentBus(await infrastructure.bus(), undefined, () => `${config.topicPrefix}umw-realtime`);
      await bus.ensureTopics([{ name: topics.entityEvents, partitions: config.topicPartitions }]);
      const db = await infrastructure.primary("realtime");
      const hub = new RealtimeHub({
        bus,
        topic: topics.entityEvents,
        snapshots: postgresSnapshotSource(db),
        commands: postgresCommandFeed({ openSession: () => db.openSession(), sql: db, log }),
        limits: realtimeLimits(config),
        log,
        groupPrefix: config.topicPrefix,
        trustedPeers: config.trustedPrincipalPeers,
        policy: await meshSubscriptionPolicy(config),
        resourceTypes: Object.keys(config.resources),
      });
      await hub.start();
      cleanup.push(() => hub.stop());
      realtimeMetrics(() => hub.stats());
      const server = await startMeshServer(runtime, { name: "realtime", port: config.realtimePort, service: RealtimeService, handlers: hub.handlers });
      cleanup.push(() => server.stop());
      return { name: "realtime", stop: cleanup.closeAll };
    } catch (error) {
      await cleanup.closeAll();
      throw error;
    }
  },
};
