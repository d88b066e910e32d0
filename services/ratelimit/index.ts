import { RateLimitService } from "../../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { rateLimiterFromConfig } from "./from-config.js";
import { rateLimitServiceHandlers } from "./rls-service.js";

export { RateLimiter, type Decision, type FailureMode, type PolicyState } from "./limiter.js";
export { bucketsFor, DEFAULT_RULES, type BucketRule, type RateLimitRules, type RateLimitSubject } from "./rules.js";

/**
 * `umw serve ratelimit`: Envoy's rate limit service (envoy.service.ratelimit.v3.RateLimitService)
 * over mTLS on UMW_RATELIMIT_PORT, on the same Redis buckets as the Node edge. With rate limits off
 * (or in the embedded mode, without Redis) it answers OK to every request.
 */
export const ratelimitService: ServiceModule = {
  name: "ratelimit",
  description: "Rate limit service for Envoy (envoy.service.ratelimit.v3), on the edges' Redis buckets",
  async start(runtime) {
    const limiter = rateLimiterFromConfig(runtime.config, runtime.log);
    if (!limiter) runtime.log.info("rate limits are off: the rate limit service answers OK to every request");
    try {
      const server = await startMeshServer(runtime, { name: "ratelimit", port: runtime.config.ratelimitPort, service: RateLimitService, handlers: rateLimitServiceHandlers(limiter) });
      return {
        name: "ratelimit",
        stop: async () => {
          await server.stop();
          await limiter?.close();
        },
      };
    } catch (error) {
      await limiter?.close();
      throw error;
    }
  },
};
