import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "./config.js";
import { unavailable } from "./errors.js";
import type { Infrastructure } from "./infrastructure.js";
import { lazyStores } from "./infrastructure.js";
import { KafkaBus } from "./kafka-bus.js";
import { kafkaSasl } from "./kafka-sasl.js";
import type { Logger } from "./logger.js";
import { tracedBus } from "./message-tracing.js";
import { RedisCache } from "./cache/redis-cache.js";
import { serviceDatabaseUrl, type DatabaseUser } from "./pg-roles.js";
import { connectPostgres, openPostgres, redactUrl, type Database } from "./sql.js";

/**
 * Connections per pool. One pool serves every service of the process on the primary, and each
 * LISTEN / advisory-lock session (command WatchCommand, realtime command feed, relay leader) holds
 * one of its connections for as long as it lives.
 */
const PRIMARY_POOL_MAX = 30;
const REPLICA_POOL_MAX = 16;

/**
 * With per-service roles (UMW_PG_ROLE_PASSWORDS_DIR) each service has a pool of its own on the
 * primary; together they stay within PRIMARY_POOL_MAX.
 */
const ROLE_POOL_MAX: Record<DatabaseUser, number> = { command: 12, processor: 8, realtime: 6, relay: 4, query: REPLICA_POOL_MAX };

/** The production stores: Postgres primary and replica (config.pgUrl, pgReplicaUrl), Kafka, Redis. */
export function realInfrastructure(config: Config, log: Logger): Infrastructure {
  const stores = lazyStores(log);
  const perRole = config.pgRolePasswordsDir !== undefined;
  /** One opener per role (or one for all when the services share the URL's user). */
  const primaries = new Map<string, () => Promise<Database>>();
  const replicas = new Map<string, () => Database>();
  return {
    kind: "real",
    primary(service) {
      const key = perRole && service ? service : "";
      let open = primaries.get(key);
      if (!open) {
        const url = serviceDatabaseUrl(config, config.pgUrl, perRole ? service : undefined);
        const max = key ? ROLE_POOL_MAX[key as DatabaseUser] : PRIMARY_POOL_MAX;
        open = stores.once(() => connectPostgres({ url, role: "primary", log, max }), (db) => db.close());
        primaries.set(key, open);
      }
      return open();
    },
    replica(service) {
      const key = perRole && service ? service : "";
      let open = replicas.get(key);
      if (!open) {
        const url = serviceDatabaseUrl(config, config.pgReplicaUrl, perRole ? service : undefined);
        open = stores.onceSync(
          () => openPostgres({ url, role: "replica", log, max: REPLICA_POOL_MAX, statementTimeoutMs: 10_000, applicationName: "umw-query" }),
          (db) => db.close(),
        );
        replicas.set(key, open);
      }
      return open();
    },
    bus: stores.once(
      async () => {
        const bus = new KafkaBus({ brokers: config.kafkaBrokers, clientId: `umw-${hostname()}-${process.pid}`, log, sasl: kafkaSasl(config) });
        try {
          await bus.connect();
        } catch (error) {
          await bus.close().catch(() => undefined);
          throw error;
        }
        return tracedBus(bus, log);
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
