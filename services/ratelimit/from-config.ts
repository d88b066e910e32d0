import type { Config } from "../../runtime/config.js";
import type { Logger } from "../../runtime/logger.js";
import { RateLimiter } from "./limiter.js";

/** The limiter the settings describe; undefined when rate limits are off or there is no Redis (embedded mode). */
export function rateLimiterFromConfig(config: Config, log: Logger): RateLimiter | undefined {
  if (!config.rateLimitEnabled) return undefined;
  if (config.embedded) {
    log.info("rate limits are off in the embedded mode (no Redis)");
    return undefined;
  }
  return new RateLimiter({
    redisUrl: config.redisUrl,
    keyPrefix: `${config.cacheKeyPrefix}ratelimit:`,
    rules: {
      principal: config.rateLimitPrincipal,
      routes: config.rateLimitRoutes,
      freshReads: config.rateLimitFreshReads,
      tenant: config.rateLimitTenant,
      tenants: config.rateLimitTenants,
    },
    failureMode: config.rateLimitFailureMode,
    timeoutMs: config.rateLimitTimeoutMs,
    log,
  });
}
