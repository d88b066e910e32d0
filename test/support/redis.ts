import { Redis } from "ioredis";
import { infra } from "./env.js";

/** Deletes every key of a test run's prefix from the shared Redis. */
export async function dropRedisPrefix(prefix: string, url = infra.redisUrl): Promise<void> {
  const redis = new Redis(url);
  try {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}
