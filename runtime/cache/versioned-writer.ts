import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { unavailable } from "../errors.js";
import { resourceSchema, type CachePolicy, type Resources } from "../resources.js";
import type { Cache, SetResult } from "./cache.js";
import { entityEntry, jitter, tombstoneEntry } from "./entry.js";
import { cacheKey, type CacheKey } from "./keys.js";

/**
 * The one write side of the cache: versioned writes of entity states. Both writes are idempotent
 * and monotonic per key (a lower version never replaces a higher one, tombstones included), which
 * is what lets the cache updater go without an inbox and an event race a loader safely.
 * Every method rejects with UNAVAILABLE (reason CACHE_UNAVAILABLE) when the cache cannot be
 * reached, so that the caller (the updater's consumer) retries the event.
 */
export interface VersionedWriter {
  /** Stores the entity at its version unless the key already holds a higher one (entry or tombstone). */
  writeThrough(entity: Entity): Promise<SetResult>;
  /**
   * Fences the key at `version` ("nothing below v"): an entry older than v (or a negative one) is
   * replaced by a tombstone that refuses every load of an older state (a lagging replica, a slow
   * loader); an entry at v or newer stays. True when the tombstone was written.
   */
  invalidate(tenant: string, type: string, id: string, version: bigint): Promise<boolean>;
  /** One entity change as its type's `cache.onEvent` says: write-through (the default) or invalidate. */
  apply(entity: Entity): Promise<AppliedChange>;
}

export type AppliedChange = { readonly kind: "written" | "invalidated"; readonly stored: boolean };

/** The cache policy of a type; undefined = not configured (the defaults apply). */
export type PolicyLookup = (type: string) => CachePolicy | undefined;

export interface VersionedWriterOptions {
  /** Key prefix, the same the query service reads with (test isolation, several deployments on one Redis). */
  readonly keyPrefix?: string;
  /** Per-type cache policies; a type it does not know is written with the default policy. */
  readonly policyOf?: PolicyLookup;
  readonly now?: () => number;
  /** Randomness of the TTL jitter (tests make it deterministic). */
  readonly random?: () => number;
  /** Called after every write attempt on a key (a query instance drops its L1 copy there). */
  readonly afterWrite?: (key: CacheKey) => void;
}

export const DEFAULT_CACHE_POLICY: CachePolicy = resourceSchema.parse({}).cache;

/** The policies of configured resource types (`config.resources`). */
export function configuredPolicies(resources: Resources): PolicyLookup {
  return (type) => resources[type]?.cache;
}

/**
 * The writer over a Cache port: the same entry format, key names and versioned set/invalidate the
 * query service reads and fills with, so an event and a loader racing on one key are ordered by
 * version whoever comes second. Entries get the type's TTL with ±10% jitter and live in the cache
 * until the end of the serve-stale grace, as the query service's own fills do; a tombstone lives
 * for a jittered TTL plus the grace, far longer than any load that started before it can take
 * (bounded by the lease), for a few bytes.
 */
export function versionedWriter(cache: Pick<Cache, "set" | "invalidate">, options: VersionedWriterOptions = {}): VersionedWriter {
  const prefix = options.keyPrefix ?? "";
  const policyOf = (type: string) => options.policyOf?.(type) ?? DEFAULT_CACHE_POLICY;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;

  async function written<T>(key: CacheKey, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      throw unavailable("CACHE_UNAVAILABLE", `cache write of ${key.local} failed: ${(error as Error)?.message ?? String(error)}`, { key: key.local });
    } finally {
      options.afterWrite?.(key);
    }
  }

  const writer: VersionedWriter = {
    writeThrough(entity) {
      const policy = policyOf(entity.type);
      const key = cacheKey(prefix, entity.tenant, entity.type, entity.id);
      const ttlMs = jitter(policy.ttlMs, random);
      const entry = entityEntry(entity, { now: now(), ttlMs, graceMs: policy.staleGraceMs, loadMs: 0 });
      return written(key, () => cache.set(key, entry, ttlMs + policy.staleGraceMs));
    },
    invalidate(tenant, type, id, version) {
      const policy = policyOf(type);
      const key = cacheKey(prefix, tenant, type, id);
      const lifetimeMs = jitter(policy.ttlMs, random) + policy.staleGraceMs;
      return written(key, () => cache.invalidate(key, tombstoneEntry(version, now(), lifetimeMs), lifetimeMs));
    },
    async apply(entity) {
      if (policyOf(entity.type).onEvent === "invalidate") {
        return { kind: "invalidated", stored: await writer.invalidate(entity.tenant, entity.type, entity.id, entity.version) };
      }
      return { kind: "written", stored: (await writer.writeThrough(entity)).stored };
    },
  };
  return writer;
}
