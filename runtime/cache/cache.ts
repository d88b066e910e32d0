import type { RpcError } from "../errors.js";
import type { CacheEntry } from "./entry.js";
import type { CacheKey } from "./keys.js";

/** What a versioned write did: stored, or refused because the key holds `current` (a higher version). */
export type SetResult = { readonly stored: true } | { readonly stored: false; readonly current: bigint };

/** What the loader of a key announces when it is done. */
export type FillMessage =
  | { readonly kind: "entry"; readonly entry: CacheEntry; readonly stored: boolean }
  | { readonly kind: "error"; readonly error: RpcError };

/** How the loader finishes: store the entry (versioned), hand it out unstored, or report a failure. */
export type Fill =
  | { readonly kind: "store"; readonly entry: CacheEntry; readonly ttlMs: number }
  | { readonly kind: "pass"; readonly entry: CacheEntry }
  | { readonly kind: "error"; readonly error: RpcError };

/** Waits for the fill announcement of one key. */
export interface FillWatch {
  /** Resolves once the subscription is active: announcements after this point are not missed. */
  readonly ready: Promise<void>;
  /** The next announcement, or undefined when `timeoutMs` passes or `signal` aborts first. */
  next(timeoutMs: number, signal?: AbortSignal): Promise<FillMessage | undefined>;
  close(): void;
}

/**
 * The shared cache (port) that every query instance reads and fills and the cache updater writes
 * (through VersionedWriter). Entries carry a version; writes are versioned (a lower version never
 * replaces a higher one, tombstones included), leases give one loader per key across instances,
 * and fills are announced to the instances that wait. Adapters: RedisCache, MemoryCache.
 * Methods reject when the cache is unreachable; the reader then degrades to the backend.
 */
export interface Cache {
  get(key: CacheKey): Promise<CacheEntry | undefined>;
  /** One round trip for many keys (MGET). */
  getMany(keys: readonly CacheKey[]): Promise<(CacheEntry | undefined)[]>;
  /** Versioned set: refused when the key holds a higher version (entry or tombstone). */
  set(key: CacheKey, entry: CacheEntry, ttlMs: number): Promise<SetResult>;
  /**
   * Fences the key at `tombstone.version` ("nothing below v"): replaces an entry older than v (or a
   * negative one) by the tombstone; keeps an entry at v or above. True when the tombstone was written.
   */
  invalidate(key: CacheKey, tombstone: CacheEntry, ttlMs: number): Promise<boolean>;
  /** `SET lease token NX PX ttlMs`: true when this caller now loads the key. */
  acquireLease(key: CacheKey, token: string, ttlMs: number): Promise<boolean>;
  /**
   * Ends a load in one step: the versioned store (for `store`), release of the lease if `token`
   * still holds it (compare-and-delete), and the announcement on the key's channel.
   * Returns the set result for `store`, undefined otherwise.
   */
  complete(key: CacheKey, token: string, fill: Fill): Promise<SetResult | undefined>;
  /** Subscribes to the key's fill channel (one shared subscriber connection per process). */
  watch(key: CacheKey): FillWatch;
  close(): Promise<void>;
}
