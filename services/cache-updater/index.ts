import { closeStack, startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { configuredPolicies, versionedWriter } from "../../runtime/cache/versioned-writer.js";
import { topicNames, topicSpecs } from "../../runtime/topics.js";
import { createCacheUpdater } from "./updater.js";

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
      const bus = await infrastructure.bus();
      await bus.ensureTopics(topicSpecs(topics, config.topicPartitions));
      const updater = createCacheUpdater({
        bus,
        writer: versionedWriter(cache, { keyPrefix: config.cacheKeyPrefix, policyOf: configuredPolicies(config.resources) }),
        topic: topics.entityEvents,
        log,
        group: `${config.topicPrefix}umw-cache-updater`,
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
