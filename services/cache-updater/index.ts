import { setTimeout as sleep } from "node:timers/promises";
import { unavailable } from "../../runtime/errors.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import type { Logger } from "../../runtime/logger.js";
import { closeStack, startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { redactUrl } from "../../runtime/sql.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { configuredPolicies, versionedWriter } from "../../runtime/cache/versioned-writer.js";
import { topicNames, topicSpecs } from "../../runtime/topics.js";
import { createCacheUpdater } from "./updater.js";

export { createCacheUpdater, type CacheOutcome, type CacheUpdater, type CacheUpdaterDeps } from "./updater.js";

/** Unlike the query service (which may start degraded), the updater has nothing to do without Redis. */
async function connectRedis(url: string, log: Logger, timeoutMs = 15_000): Promise<RedisCache> {
  const cache = await RedisCache.connect({ url, log });
  const deadline = Date.now() + timeoutMs;
  while (cache.redis.status !== "ready") {
    if (Date.now() > deadline) {
      await cache.close().catch(() => undefined);
      throw unavailable("REDIS_UNREACHABLE", `cannot reach Redis at ${redactUrl(url)} (status ${cache.redis.status})`);
    }
    log.warn({ url: redactUrl(url) }, "Redis not reachable yet; retrying");
    await sleep(500);
  }
  return cache;
}

/**
 * The cache updater worker: consumes `umw.entity-events.v1` and writes each entity's new version
 * into Redis (or fences it), per resource type. Serves only Health (and reflection) on its port.
 */
export const cacheUpdaterService: ServiceModule = {
  name: "cache-updater",
  description: "Keeps the cache in step with domain events",
  async start(runtime) {
    const { config, log } = runtime;
    const topics = topicNames(config);
    const cleanup = closeStack(log);
    const closeAll = cleanup.closeAll;
    try {
      const cache = await connectRedis(config.redisUrl, log);
      cleanup.push(() => cache.close());
      const bus = new KafkaBus({ brokers: config.kafkaBrokers, clientId: "umw-cache-updater", log });
      cleanup.push(() => bus.close());
      await bus.connect();
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
