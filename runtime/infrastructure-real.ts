import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "./config.js";
import { unavailable } from "./errors.js";
import type { Infrastructure } from "./infrastructure.js";
import { lazyStores } from "./infrastructure.js";
import { KafkaBus } from "./kafka-bus.js";
import { kafkaSasl } from "./kafka-sasl.js";
import type { Logger } from "./logger.js";
import { RedisCache } from "./cache/redis-cache.js";
import { connectPostgres, openPostgres, redactUrl } from "./sql.js";

/**
 * Connections per pool. One pool serves every service of the process on the primary, and each
 * LISTEN / advisory-lock session (command WatchCommand, realtime command feed, relay leader) holds
 * one of its connections for as long as it lives.
 */
const PRIMARY_POOL_MAX = 30;
const REPLICA_POOL_MAX = 16;

/** The production stores: Postgres primary and replica (config.pgUrl, pgReplicaUrl), Kafka, Redis. */
export function realInfrastructure(config: Config, log: Logger): Infrastructure {
  const stores = lazyStores(log);
  return {
    kind: "real",
    primary: stores.once(
      () => connectPostgres({ url: config.pgUrl, role: "primary", log, max: PRIMARY_POOL_MAX }),
      (db) => db.close(),
    ),
    replica: stores.onceSync(
      () => openPostgres({ url: config.pgReplicaUrl, role: "replica", log, max: REPLICA_POOL_MAX, statementTimeoutMs: 10_000, applicationName: "umw-query" }),
      (db) => db.close(),
    ),
    bus: stores.once(
      async () => {
        const bus = new KafkaBus({ brokers: config.kafkaBrokers, clientId: `umw-${hostname()}-${process.pid}`, log, sasl: kafkaSasl(config) });
        try {
          await bus.connect();
        } catch (error) {
          await bus.close().catch(() => undefined);
          throw error;
        }
        return bus;
      },
      (bus) => bus.close(),
    ),
    cache: (() => {
      const open = stores.once(
        () => RedisCache.connect({ url: config.redisUrl, log }),
        (cache) => cache.close(),
      );
      return async (options?: { readonly required?: boolean }) => {
        const cache = await open();
        if (options?.required) await redisReady(cache, config.redisUrl, log);
        return cache;
      };
    })(),
    labels: { primary: `Postgres primary at ${redactUrl(config.pgUrl)}`, bus: `Kafka at ${config.kafkaBrokers.join(",")}` },
    close: () => stores.close(),
  };
}

/** For a service that has nothing to do without Redis (the cache updater); the query service may start degraded. */
async function redisReady(cache: RedisCache, url: string, log: Logger, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (cache.redis.status !== "ready") {
    if (Date.now() > deadline) throw unavailable("REDIS_UNREACHABLE", `cannot reach Redis at ${redactUrl(url)} (status ${cache.redis.status})`);
    log.warn({ url: redactUrl(url) }, "Redis not reachable yet; retrying");
    await sleep(500);
  }
}
