import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { resourceSchema, type CachePolicy, type Resources } from "../../runtime/resources.js";
import type { Cache } from "../query/cache.js";
import { entityEntry, jitter, tombstoneEntry } from "../query/entry.js";
import { cacheKey } from "../query/keys.js";

/**
 * What the cache updater needs of the cache: versioned writes only. Both are idempotent and
 * monotonic per key (a lower version never replaces a higher one), which is what lets the updater
 * go without an inbox.
 */
export interface VersionedCacheWriter {
  /** Stores the entity at its version unless the key already holds a higher one. True when stored. */
  writeThrough(entity: Entity): Promise<boolean>;
  /** Fences the key at `version` ("nothing below v"). True when the tombstone was written. */
  invalidate(tenant: string, type: string, id: string, version: bigint): Promise<boolean>;
}

const DEFAULT_POLICY: CachePolicy = resourceSchema.parse({}).cache;

export function cachePolicy(resources: Resources, type: string): CachePolicy {
  return resources[type]?.cache ?? DEFAULT_POLICY;
}

export interface CacheWriterOptions {
  /** Key prefix, the same the query service uses (test isolation, several deployments on one Redis). */
  readonly keyPrefix?: string;
  readonly resources?: Resources;
  readonly now?: () => number;
}

/**
 * The writer on the read path's Cache port (services/query): the same entry format, key names and
 * Lua-versioned set/invalidate the query service reads and fills with, so an event and a loader
 * racing on one key are ordered by version whoever comes second.
 */
export function cacheWriter(cache: Cache, options: CacheWriterOptions = {}): VersionedCacheWriter {
  const prefix = options.keyPrefix ?? "";
  const resources = options.resources ?? {};
  const now = options.now ?? Date.now;
  return {
    async writeThrough(entity) {
      const policy = cachePolicy(resources, entity.type);
      const ttlMs = jitter(policy.ttlMs);
      const entry = entityEntry(entity, { now: now(), ttlMs, graceMs: policy.staleGraceMs, loadMs: 0 });
      // The Redis key lives until the end of the serve-stale grace, as the query service's fills do.
      const result = await cache.set(cacheKey(prefix, entity.tenant, entity.type, entity.id), entry, ttlMs + policy.staleGraceMs);
      return result.stored;
    },
    async invalidate(tenant, type, id, version) {
      const policy = cachePolicy(resources, type);
      // A tombstone must outlive any load that started before it (bounded by the lease and the
      // backend timeout); a full TTL is far beyond that and costs only a few bytes.
      const lifetimeMs = jitter(policy.ttlMs) + policy.staleGraceMs;
      return cache.invalidate(cacheKey(prefix, tenant, type, id), tombstoneEntry(version, now(), lifetimeMs), lifetimeMs);
    },
  };
}
