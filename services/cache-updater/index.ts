import { closeStack, startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { configuredPolicies, versionedWriter } from "../../runtime/cache/versioned-writer.js";
import { topicNames, topicSpecs } from "../../runtime/topics.js";
import { createCacheUpdater, type CacheOutcome } from "./updater.js";
import { instrumentBus } from "../../runtime/bus-metrics.js";
import { counter, defaultRegistry } from "../../runtime/metrics.js";

export { createCacheUpdater, type CacheOutcome, type CacheUpdater, type CacheUpdaterDeps } from "./updater.js";

/**
 * The cache updater worker: consumes `umw.entity-events.v1` and writes each entity's new version
 * into Redis (or fences it), per resource type. Serves only Health (and reflection) on its port.
 */
export const cacheUpdaterService: ServiceModule = {
  name: "cache-updater",
  description: "Keeps the cache in step with domain events",
  async start(runtime) {
    const { config, log, infrastructure } = runtime;
    const topics = topicNames(config);
    const cleanup = closeStack(log);
    const closeAll = cleanup.closeAll;
    try {
      // Unlike the query service (which may start degraded), the updater has nothing to do without the cache.
      const cache = await infrastructure.cache({ required: true });
      const bus = instrumentBus(await infrastructure.bus());
      await bus.ensureTopics(topicSpecs(topics, config.topicPartitions));
      const updater = createCacheUpdater({
        bus,
        writer: versionedWriter(cache, { keyPrefix: config.cacheKeyPrefix, policyOf: configuredPolicies(config.resources) }),
        topic: topics.entityEvents,
        log,
        group: `${config.topicPrefix}umw-cache-updater`,
        batchSize: config.cacheUpdaterBatchSize,
        onOutcome: cacheUpdaterMetrics(),
      });
      await updater.start();
      cleanup.push(() => updater.stop());
      const server = await startMeshServer(runtime, { name: "cache-updater", port: config.cacheUpdaterPort });
      cleanup.push(() => server.stop());
      return { name: "cache-updater", stop: closeAll };
    } catch (error) {
      await closeAll();
      throw error;
    }
  },
};

/** `umw_cache_updater_events_total{outcome,stored}`: what each domain event did to the cache. */
function cacheUpdaterMetrics(): (outcome: CacheOutcome) => void {
  const events = counter<"outcome" | "stored">(defaultRegistry, {
    name: "umw_cache_updater_events_total",
    help: "Domain events the cache updater handled: outcome = written | invalidated | tombstoned | skipped; stored = whether the versioned write took it (an older version is refused).",
    labelNames: ["outcome", "stored"],
  });
  return (outcome) => events.inc({ outcome: outcome.kind, stored: outcome.kind === "skipped" ? "false" : String(outcome.stored) });
}
