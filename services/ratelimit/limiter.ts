import { Redis } from "ioredis";
import type { Logger } from "../../runtime/logger.js";
import { GCRA_SCRIPT } from "./gcra-script.js";
import { bucketsFor, type Bucket, type RateLimitRules, type RateLimitSubject } from "./rules.js";

/** When Redis cannot answer: let requests through (`open`) or refuse them (`closed`). */
export type FailureMode = "open" | "closed";

/** One bucket's state after a decision. */
export interface PolicyState {
  readonly policy: string;
  /** The bucket's capacity (burst) and the seconds it takes to refill completely. */
  readonly quota: number;
  readonly windowSeconds: number;
  readonly remaining: number;
  /** Milliseconds until the bucket is full again. */
  readonly resetMs: number;
  /** Milliseconds until this bucket would allow the request (0 when it allows it). */
  readonly retryAfterMs: number;
}

export type Decision =
  | { readonly outcome: "allowed" | "limited"; readonly policies: readonly PolicyState[]; readonly retryAfterMs: number }
  /** Redis did not answer; `allowed` says what the failure mode decided. */
  | { readonly outcome: "unavailable"; readonly allowed: boolean; readonly policies: readonly []; readonly retryAfterMs: number };

export interface RateLimiterOptions {
  readonly redisUrl: string;
  /** Prefix of every bucket key (e.g. the cache key prefix + `ratelimit:`). */
  readonly keyPrefix: string;
  readonly rules: RateLimitRules;
  readonly failureMode: FailureMode;
  /** How long a check may wait for Redis before the failure mode decides; default 250 ms. */
  readonly timeoutMs?: number;
  readonly log: Logger;
}

interface GcraCommand {
  umwGcra(...args: (string | number)[]): Promise<number[]>;
}

/**
 * Rate limits and quotas shared by every edge instance (Node edges, and Envoy through the umw
 * RateLimitService): buckets in Redis, charged atomically by one Lua script (gcra-script.ts).
 */
export class RateLimiter {
  private readonly redis: Redis;
  private lastErrorLog = 0;

  constructor(private readonly options: RateLimiterOptions) {
    const timeout = options.timeoutMs ?? 250;
    this.redis = new Redis(options.redisUrl, {
      lazyConnect: true,
      enableAutoPipelining: true,
      // Fail fast while Redis is away: the failure mode decides at once instead of requests queueing.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: timeout,
      connectTimeout: 1_000,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    });
    this.redis.on("error", (error) => this.logError(error));
    this.redis.defineCommand("umwGcra", { lua: GCRA_SCRIPT });
    // Until the first connection attempt ends, checks wait for it (instead of the failure mode deciding).
    this.connecting = this.redis.connect().then(
      () => undefined,
      () => undefined,
    );
  }

  private connecting: Promise<void> | undefined;

  get failureMode(): FailureMode {
    return this.options.failureMode;
  }

  /** Charges the request to its buckets (`cost` requests) and says whether it may go on. */
  async check(request: RateLimitSubject, cost = 1): Promise<Decision> {
    const buckets = bucketsFor(this.options.rules, request);
    let reply: number[];
    if (this.connecting) {
      await this.connecting;
      this.connecting = undefined;
    }
    try {
      const args: (string | number)[] = [buckets.length, ...buckets.map((bucket) => this.options.keyPrefix + bucket.key), cost];
      for (const bucket of buckets) args.push(1000 / bucket.rule.rps, bucket.rule.burst);
      reply = await (this.redis as unknown as GcraCommand).umwGcra(...args);
    } catch (error) {
      this.logError(error as Error);
      return { outcome: "unavailable", allowed: this.options.failureMode === "open", policies: [], retryAfterMs: 1_000 };
    }
    const policies = buckets.map((bucket, i) => policyState(bucket, reply, i));
    const allowed = reply[0] === 1;
    return { outcome: allowed ? "allowed" : "limited", policies, retryAfterMs: allowed ? 0 : Math.max(...policies.map((policy) => policy.retryAfterMs)) };
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private logError(error: Error): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) return;
    this.lastErrorLog = now;
    this.options.log.warn({ err: error, failureMode: this.options.failureMode }, `rate limiter cannot reach redis; requests are ${this.options.failureMode === "open" ? "let through" : "refused"}`);
  }
}

function policyState(bucket: Bucket, reply: readonly number[], index: number): PolicyState {
  const [retryAfterMs, remaining, resetMs] = reply.slice(1 + index * 3, 4 + index * 3) as [number, number, number];
  return {
    policy: bucket.policy,
    quota: bucket.rule.burst,
    windowSeconds: Math.max(1, Math.ceil(bucket.rule.burst / bucket.rule.rps)),
    remaining,
    resetMs,
    retryAfterMs,
  };
}
